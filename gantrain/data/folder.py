"""Any folder tree of images (class sub-folders give labels), and aligned CelebA, at a square size."""

import logging
import os
import warnings
from pathlib import Path

import torch
import torchvision.transforms.v2 as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from gantrain.data.base import Data, StreamData, TensorData
from gantrain.data.batches import TOO_LARGE, UNREADABLE, count_skipped, describe_skipped, skipped_rows
from gantrain.data.decoded import cached_decode
from gantrain.errors import UserError

log = logging.getLogger(__name__)
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


def image_files(root: Path) -> list[Path]:
    """Image files under root, sorted, as found there (not resolved).

    Linked folders are followed, as torchvision's ImageFolder does (`data/celeba/img -> /datasets/...`); a link
    back to a folder it sits in (a cycle) is skipped, as `find -L` does, so the walk ends and no image repeats.
    """
    found, stack = [], [(root, frozenset({os.path.realpath(root)}))]
    while stack:
        folder, ancestors = stack.pop()  # ancestors: the real paths of folder and the folders above it
        try:
            entries = list(os.scandir(folder))
        except OSError:  # a folder we may not read: skipped, as rglob did
            continue
        for entry in entries:
            path = folder / entry.name
            if entry.is_dir():  # follows links
                real = os.path.realpath(path)
                if real not in ancestors:
                    stack.append((path, ancestors | {real}))
            elif entry.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:  # a dangling link is neither
                found.append(path)
    return sorted(found)


def scan(root: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image paths under root, sorted; labels from first-level sub-folders when there are two or more."""
    if not root.is_dir():
        raise UserError(f"data.root={root} is not a folder: point data.root at a folder of images")
    paths = image_files(root)
    if not paths:
        raise UserError(f"data.root={root} holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    top = {p.relative_to(root).parts[0] for p in paths if len(p.relative_to(root).parts) > 1}
    if len(top) >= 2 and all(len(p.relative_to(root).parts) > 1 for p in paths):
        classes = sorted(top)
        index = {c: i for i, c in enumerate(classes)}
        return paths, [index[p.relative_to(root).parts[0]] for p in paths], classes
    return paths, [-1] * len(paths), []


class ImageFiles(Dataset):
    """Decodes one file to uint8 (C, size, size): RGB or L, shorter side resized, centre-cropped."""

    def __init__(self, paths: list[Path], labels: list[int], image_size: int, channels: int):
        self.paths, self.labels, self.channels = paths, labels, channels
        self.transform = T.Compose([T.Resize(image_size, antialias=True), T.CenterCrop(image_size), T.PILToTensor()])
        self.size = image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            with warnings.catch_warnings():
                # Between 1x and 2x Image.MAX_IMAGE_PIXELS PIL only warns: such a photo is large, not hostile,
                # so it is loaded without a warning per file and worker. Above 2x PIL raises: handled below.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(self.paths[i]) as img:
                    img = img.convert("RGB" if self.channels == 3 else "L")  # grayscale, RGBA and palette alike
                    return self.transform(img), self.labels[i]
        except Image.DecompressionBombError:  # PIL's limit stays as it is: the file is skipped and counted
            return self.blank(), TOO_LARGE
        except (OSError, ValueError, SyntaxError, EOFError):  # truncated or not really an image
            return self.blank(), UNREADABLE

    def blank(self) -> torch.Tensor:
        """What a skipped file yields in its batch (the sentinel label drops the row)."""
        return torch.zeros(self.channels, self.size, self.size, dtype=torch.uint8)


def decode_all(files: ImageFiles, workers: int, root: Path) -> dict:
    """Decode every file once with `workers` processes; those that cannot be are dropped and counted by reason,
    with the first few named (relative to root)."""
    parts = list(DataLoader(files, batch_size=256, num_workers=workers))
    images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    bad = skipped_rows(labels)
    examples = [str(files.paths[i].relative_to(root)) for i in bad.nonzero().flatten()[:3].tolist()]
    return {"images": images[~bad], "labels": labels[~bad], "skipped": count_skipped(labels), "skipped_files": examples}


def memory_budget_mb(limit: str | int) -> float:
    """memory_limit_mb=auto: half of the memory available now."""
    if limit != "auto":
        return float(limit)
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**20 / 2


def folder(
    root: str, image_size: int = 64, channels: int = 3, in_memory: str | bool = "auto",
    memory_limit_mb: str | int = "auto", hflip: bool = False, workers: int = 2, name: str = "folder",
) -> Data:
    """Images under `root`, decoded once into memory (and cached on disk) when they fit, else streamed."""
    if channels not in (1, 3):
        raise UserError(f"data.channels={channels}: use 1 (grayscale) or 3 (RGB)")
    base = Path(root).expanduser()
    paths, labels, classes = scan(base)
    files = ImageFiles(paths, labels, image_size, channels)
    nbytes = len(paths) * channels * image_size * image_size
    if in_memory is True or (in_memory == "auto" and nbytes <= memory_budget_mb(memory_limit_mb) * 2**20):
        settings = f"size={image_size} channels={channels}"
        decoded = cached_decode(base, paths, settings, lambda: decode_all(files, workers, base))
        if decoded["skipped"]:
            examples = ", ".join(decoded["skipped_files"])
            log.warning("%s (e.g. %s)", describe_skipped(decoded["skipped"], len(paths)), examples)
        if len(decoded["images"]) == 0:
            raise UserError(f"none of the {len(paths)} image files under {root} could be read: check data.root")
        log.info("%d images from %s in memory (%.0f MB)", len(decoded["images"]), root, decoded["images"].numel() / 2**20)
        return TensorData(name, decoded["images"], decoded["labels"] if classes else None, len(classes), hflip, root=root)
    return StreamData(name, files, (channels, image_size, image_size), len(classes), hflip, workers, root=root)


def celeba(
    root: str = "data/celeba", image_size: int = 64, download: bool = False, in_memory: str | bool = "auto",
    memory_limit_mb: str | int = "auto", hflip: bool = False, workers: int = 2,
) -> Data:
    """Aligned CelebA (img_align_celeba/*.jpg), Resize(64) + CenterCrop(64) as in the DCGAN tutorial."""
    base = Path(root).expanduser()
    candidates = [base / "img_align_celeba", base / "celeba" / "img_align_celeba"]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is None and download:
        import torchvision

        torchvision.datasets.CelebA(str(base), split="all", download=True)
        found = base / "celeba" / "img_align_celeba"
    if found is None:
        raise UserError(
            f"data=celeba: no img_align_celeba/ folder under data.root={root}; unzip img_align_celeba.zip "
            f"(from the CelebA site) into {root}, or add data.download=true"
        )
    return folder(str(found), image_size, 3, in_memory, memory_limit_mb, hflip, workers, name="celeba")
