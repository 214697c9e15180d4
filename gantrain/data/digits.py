"""scikit-learn's bundled 1,797 handwritten digits (8x8, ink 0..16): real data that needs no download."""

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from gantrain.data.base import TensorData, take
from gantrain.data.transforms import resize_center_crop


def digits(image_size: int = 32, hflip: bool = False, limit: int | None = None, limit_seed: int = 0) -> TensorData:
    """The UCI optical digits as white-on-black uint8 images resized to image_size, with labels 0-9; `limit`: only
    that many of them, chosen by `limit_seed` (gantrain.data.base.take)."""
    ink, target = bundled_digits()
    images = (torch.as_tensor(ink, dtype=torch.float32) * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)
    labels = torch.as_tensor(target, dtype=torch.int64)
    images, labels = take(images, labels, limit, limit_seed, "digits")
    return TensorData("digits", resize_center_crop(images, image_size), labels, num_classes=10, hflip=hflip)


def bundled_digits() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) ink in 0..16 and the labels, read from scikit-learn's data file without importing scikit-learn
    (whose import, through scipy.stats, takes 2 s of every command's start); its load_digits where the file moved."""
    spec = importlib.util.find_spec("sklearn")  # locates the package without running it
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec and spec.origin else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    with gzip.open(path, "rt") as rows:
        table = np.loadtxt(rows, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
