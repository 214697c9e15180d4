"""Penalties on the discriminator's gradients with respect to its input (WGAN-GP, R1)."""

from collections.abc import Callable

import torch
from torch import Tensor

Critic = Callable[[Tensor], Tensor]  # samples -> logits (B,); labels already bound for conditional models


def per_sample_grad(critic: Critic, x: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """d critic(x) / dx for each sample, (B, ...) like x, kept in the graph so the penalty trains D.

    Under fp16 autocast this backward runs in half precision, where small gradients underflow to zero. As in
    PyTorch's AMP recipe for gradient penalties, `scale` (the GradScaler's loss scale) multiplies the output
    before differentiating and divides the gradient after; the output scaled is the batch mean, whose
    gradients are as large as those of the losses the GradScaler tunes its scale for (not B times larger).
    """
    x = x.detach().requires_grad_(True)
    out = critic(x)
    if scale is None:
        (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
        return grad
    (grad,) = torch.autograd.grad(out.mean() * scale, x, create_graph=True)
    return grad * (out.shape[0] / scale)


def gradient_penalty(critic: Critic, real: Tensor, fake: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """WGAN-GP (Gulrajani et al.): E[(||grad D(x_hat)||_2 - 1)^2] on random interpolates x_hat.

    One mixing coefficient per sample, shaped (B, 1, 1, 1) for images, and one gradient norm per sample
    over all non-batch dimensions; taking the norm over another dimension (as PyTorch-GAN and
    pytorch-wgan once did) penalises something else entirely. `scale`: see per_sample_grad.
    """
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    interpolates = alpha * real.detach() + (1 - alpha) * fake.detach()
    norms = per_sample_grad(critic, interpolates, scale).flatten(1).norm(2, dim=1)  # (B,)
    return (norms - 1).pow(2).mean()


def r1_penalty(critic: Critic, real: Tensor, scale: Tensor | float | None = None) -> Tensor:
    """R1 (Mescheder et al.): E[||grad D(x)||^2] on real samples; the caller weighs it by gamma / 2.
    `scale`: see per_sample_grad."""
    return per_sample_grad(critic, real, scale).flatten(1).pow(2).sum(1).mean()
