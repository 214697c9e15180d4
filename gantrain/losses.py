"""Adversarial losses as pure functions of discriminator logits, and the small classes that pair them.

Every discriminator outputs raw logits (no sigmoid); the BCE forms below use softplus, which is the
numerically stable way to write -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x).
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def bce_d(real_logits: Tensor, fake_logits: Tensor, real_label: float = 1.0) -> Tensor:
    """-E[log D(x)] - E[log(1 - D(G(z)))]; with real_label < 1, one-sided label smoothing."""
    if real_label == 1.0:
        real_term = F.softplus(-real_logits).mean()
    else:
        real_term = F.binary_cross_entropy_with_logits(real_logits, torch.full_like(real_logits, real_label))
    return real_term + F.softplus(fake_logits).mean()


def bce_g(fake_logits: Tensor) -> Tensor:
    """Non-saturating generator loss: -E[log D(G(z))]."""
    return F.softplus(-fake_logits).mean()


def minimax_g(fake_logits: Tensor) -> Tensor:
    """The original saturating generator loss: E[log(1 - D(G(z)))] = -E[softplus(logit)]."""
    return -F.softplus(fake_logits).mean()


def lsgan_d(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Least-squares D loss (CS231n, LSGAN eq. 9): 0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2]."""
    return 0.5 * (real_scores - 1).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()


def lsgan_g(fake_scores: Tensor) -> Tensor:
    """Least-squares G loss: 0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake_scores - 1).pow(2).mean()


class GANLoss:
    """A D loss and a G loss over logits, plus how to show D's output as a number to watch."""

    name = "gan"

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def output(self, logits: Tensor) -> Tensor:
        """What D(x) means for this loss: a probability for BCE losses, the raw score otherwise."""
        return logits

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class BCE(GANLoss):
    """Binary cross-entropy with the non-saturating generator loss (the default of every seed)."""

    name = "bce"

    def __init__(self, real_label: float = 1.0):
        if not 0.0 < real_label <= 1.0:
            raise ValueError(f"loss.real_label must be in (0, 1], got {real_label}")
        self.real_label = float(real_label)

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return bce_d(real_logits, fake_logits, self.real_label)

    def g(self, fake_logits: Tensor) -> Tensor:
        return bce_g(fake_logits)

    def output(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)


class Minimax(BCE):
    """The saturating minimax game of Goodfellow et al.: G minimises log(1 - D(G(z)))."""

    name = "minimax"

    def g(self, fake_logits: Tensor) -> Tensor:
        return minimax_g(fake_logits)


class LSGAN(GANLoss):
    """Least-squares GAN with the 1/2 factors of the CS231n formulas."""

    name = "lsgan"

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return lsgan_d(real_logits, fake_logits)

    def g(self, fake_logits: Tensor) -> Tensor:
        return lsgan_g(fake_logits)
