"""Resizing of whole uint8 image tensors, done once when a dataset is loaded into memory."""

import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor


def resize_center_crop(images: Tensor, size: int, chunk: int = 4096) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size): shorter side to `size` (antialiased), centre crop.

    Works in chunks so that a large set never needs a float copy of itself.
    """
    if images.shape[-2:] == (size, size):
        return images
    out = [TF.center_crop(TF.resize(part, size, antialias=True), [size, size]) for part in images.split(chunk)]
    return torch.cat(out)
