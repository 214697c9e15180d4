"""`gantrain-sample run=<CycleGAN run> input=<folder> out=<folder> direction=AtoB`: translate every image
of a folder and write the results under the same file names."""

import logging
from pathlib import Path

import torch
from PIL import Image

from gantrain.config.build import system_from_checkpoint
from gantrain.data.batches import SKIP_REASONS
from gantrain.data.folder import IMAGE_EXTENSIONS, ImageFiles
from gantrain.data.pixels import to_model_range, to_uint8
from gantrain.device import resolve_device
from gantrain.errors import UserError
from gantrain.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"input={folder} is not a folder: give a folder of images (e.g. .../testA)")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"input={folder} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    return files


def translate_folder(run: str, source: str, out: str | None, direction: str, batch_size: int, device: str,
                     trust: bool = False) -> Path:
    """Each image resized to the trained size, through G_AB (AtoB) or G_BA (BtoA), saved as out/<same name>."""
    if direction not in ("AtoB", "BtoA"):
        raise UserError(f"direction={direction}: use AtoB or BtoA")
    state = load_checkpoint(run)
    system = system_from_checkpoint(state, trust).to(resolve_device(device)).eval()
    if not system.translates:
        raise UserError(f"input= translates images with a CycleGAN run; {state['path']} holds a model that draws "
                        f"from noise: drop input= and direction=")
    channels, size = state["data_shape"][0], state["data_shape"][-1]
    files = image_files(Path(source).expanduser())
    target = Path(out).expanduser() if out else Path(source).expanduser().parent / f"{Path(source).name}_{direction}"
    target.mkdir(parents=True, exist_ok=True)
    decoder = ImageFiles(files, [-1] * len(files), size, channels)  # resized and cropped as training data is
    written, skipped = 0, 0
    for start in range(0, len(files), batch_size):
        rows = [decoder[i] for i in range(start, min(start + batch_size, len(files)))]
        kept = [(files[start + k].name, image) for k, (image, label) in enumerate(rows)
                if label not in SKIP_REASONS]
        skipped += len(rows) - len(kept)
        if not kept:
            continue
        result = system.translate(to_model_range(torch.stack([image for _, image in kept])), direction).cpu()
        for (name, _), image in zip(kept, to_uint8(result)):
            array = image.permute(1, 2, 0).numpy()
            Image.fromarray(array[..., 0] if channels == 1 else array).save(target / name)
            written += 1
    if skipped:
        log.warning("skipped %d unreadable or oversized file(s) in %s", skipped, source)
    log.info("%d images %s from %s (step %d) -> %s", written, direction, state["path"], state["step"], target)
    return target
