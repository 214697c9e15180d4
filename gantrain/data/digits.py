"""scikit-learn's bundled 1,797 handwritten digits (8x8, ink 0..16): real data that needs no download."""

import torch

from gantrain.data.base import TensorData, take
from gantrain.data.transforms import resize_center_crop


def digits(image_size: int = 32, hflip: bool = False, limit: int | None = None, limit_seed: int = 0) -> TensorData:
    """The UCI optical digits as white-on-black uint8 images resized to image_size, with labels 0-9; `limit`: only
    that many of them, chosen by `limit_seed` (gantrain.data.base.take)."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn; reads a local file

    bunch = load_digits()
    ink = torch.as_tensor(bunch.images, dtype=torch.float32)  # (1797, 8, 8) in 0..16
    images = (ink * (255.0 / 16.0)).round().to(torch.uint8).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    images, labels = take(images, labels, limit, limit_seed, "digits")
    return TensorData("digits", resize_center_crop(images, image_size), labels, num_classes=10, hflip=hflip)
