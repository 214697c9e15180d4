"""Pixel values: the uint8 images files and datasets store, and the [-1, 1] floats the networks see."""

import torch
from torch import Tensor


def to_model_range(x: Tensor) -> Tensor:
    """uint8 images -> float in [-1, 1]; float data (points) passes through unchanged."""
    if x.dtype == torch.uint8:
        return x.float().div_(127.5).sub_(1.0)
    return x.float()


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats -> uint8 0..255, as image files store them (the inverse of to_model_range)."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
