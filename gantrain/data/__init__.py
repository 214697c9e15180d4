"""Datasets as tensors in [-1, 1] (images (B, C, H, W) or points (B, D)) with resumable batch streams, one module
per source family; the decoded-image cache and pixel conversions."""

from gantrain.data.base import Data, StreamData, TensorData

__all__ = ["Data", "StreamData", "TensorData"]
