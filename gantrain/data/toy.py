"""Seed 002's toy data: 1,000 points X.A + b with X ~ N(0, I), a shifted and skewed 2-D Gaussian."""

import numpy as np
import torch

from gantrain.data.base import TensorData

A = np.array([[1.0, 2.0], [-0.1, 0.5]])
B = np.array([1.0, 2.0])


def gaussian2d(n: int = 1000, seed: int = 0) -> TensorData:
    """Points with mean b and covariance A^T A = [[1.01, 1.95], [1.95, 4.25]]; fixed by `seed`."""
    x = np.random.RandomState(seed).normal(size=(n, 2))
    points = torch.as_tensor(x @ A + B, dtype=torch.float32)  # (n, 2), not rescaled: G is linear
    return TensorData("gaussian2d", points)
