"""Draw samples from a trained run: an .npz of uint8 images (N, C, H, W) and a PNG grid."""

import logging
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from gantrain.build import system_from_checkpoint
from gantrain.checkpoint import find_checkpoint, load_checkpoint
from gantrain.pixels import to_uint8
from gantrain.device import resolve_device
from gantrain.errors import UserError

log = logging.getLogger(__name__)
MAX_GRID = 1024  # a PNG of more images than this is too big to look at


def output_paths(run: str, out: str | None) -> tuple[Path, Path]:
    """(npz, png) paths: `out` may name either one; the default is samples.npz beside the checkpoints."""
    if out is None:
        checkpoint = find_checkpoint(run)
        base = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
        out = str(base / "samples.npz")
    path = Path(out).expanduser()
    if path.suffix.lower() not in (".npz", ".png"):
        raise UserError(f"out={out}: name an .npz (samples) or .png (grid) file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_suffix(".npz"), path.with_suffix(".png")


def sample_to_files(run: str, n: int, out: str | None, batch_size: int, device: str, seed: int,
                    label: int | None = None, trust: bool = False) -> list[Path]:
    if n <= 0 or batch_size <= 0:
        raise UserError(f"n={n}, batch_size={batch_size}: both must be positive")
    npz_path, png_path = output_paths(run, out)
    state = load_checkpoint(run)
    system = system_from_checkpoint(state, trust).to(resolve_device(device)).eval()
    if system.translates:
        raise UserError(f"{state['path']} holds a model that translates images rather than drawing them from noise: "
                        f"gantrain-sample run={run} input=<folder of images> out=<folder> direction=AtoB")
    if not system.draws_samples:
        raise UserError(f"{state['path']} holds a {type(system).__name__}, which does not draw samples from noise")
    labels = class_labels(system, n, label)
    samples = system.sample(n, batch_size, torch.Generator().manual_seed(seed), **({"labels": labels} if labels is not None else {}))
    if samples.ndim == 4:
        arrays = {"images": to_uint8(samples).numpy()} | ({"labels": labels.numpy()} if labels is not None else {})
        np.savez_compressed(npz_path, **arrays)
        save_image(samples[:MAX_GRID], png_path, nrow=int(np.ceil(np.sqrt(min(n, MAX_GRID)))), normalize=True, value_range=(-1, 1))
    else:  # points: keep the floats, plot them over nothing
        np.savez_compressed(npz_path, points=samples.numpy())
        from gantrain.loggers import scatter, to_pil

        to_pil(scatter(samples, None)).save(png_path)
    log.info("%d samples from %s (step %d) -> %s, %s", n, state["path"], state["step"], npz_path, png_path)
    return [npz_path, png_path]


def class_labels(system, n: int, label: int | None) -> torch.Tensor | None:
    """The classes to draw for a conditional model: all of one (`label=3`) or each in turn."""
    classes = system.num_classes
    if not classes:
        if label is not None:
            raise UserError(f"label={label}: this model is not conditional; drop label=")
        return None
    if label is None:
        return torch.arange(n) % classes
    if not 0 <= int(label) < classes:
        raise UserError(f"label={label}: this model knows classes 0..{classes - 1}")
    return torch.full((n,), int(label), dtype=torch.long)
