"""Penalties on the discriminator's gradients with respect to its input (WGAN-GP, R1)."""

from collections.abc import Callable

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]  # samples -> logits (B,); labels already bound for conditional models


def per_sample_grad(critic: Critic, x: Tensor) -> Tensor:
    """d critic(x) / dx for each sample, (B, ...) like x, kept in the graph so the penalty trains D."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor) -> Tensor:
    """WGAN-GP (Gulrajani et al.): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates x_hat.

    One mixing coefficient per sample, shaped (B, 1, 1, 1) for images, and one gradient norm per sample
    over all non-batch dimensions; taking the norm over another dimension (as PyTorch-GAN and
    pytorch-wgan once did) penalises something else entirely.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    interpolates = alpha * real.detach() + (1 - alpha) * fake.detach()
    norms = per_sample_grad(critic, interpolates).flatten(1).norm(2, dim=1)  # (B,)
    return (norms - 1).pow(2).mean()


def r1_penalty(critic: Critic, real: Tensor) -> Tensor:
    """R1 (Mescheder et al.): E[||grad D(x)||^2] on real samples; the caller weighs it by gamma / 2."""
    return per_sample_grad(critic, real).flatten(1).pow(2).sum(1).mean()
