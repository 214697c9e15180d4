"""Adversarial losses as pure functions of discriminator logits, and the small classes that pair them.

Every discriminator outputs raw logits (no sigmoid); the BCE forms below use softplus, which is the
numerically stable way to write -log(sigmoid(x)) = softplus(-x) and -log(1 - sigmoid(x)) = softplus(x).
The classes also carry the options that change how D is trained with them: label smoothing, the WGAN
weight clip and gradient penalty, and the R1 penalty (the system applies the penalties).
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.errors import UserError


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


def lsgan_d(real_scores: Tensor, fake_scores: Tensor, real_label: float = 1.0) -> Tensor:
    """Least-squares D loss (CS231n, LSGAN eq. 9): 0.5 E[(D(x) - 1)^2] + 0.5 E[D(G(z))^2]."""
    return 0.5 * (real_scores - real_label).pow(2).mean() + 0.5 * fake_scores.pow(2).mean()


def lsgan_g(fake_scores: Tensor) -> Tensor:
    """Least-squares G loss: 0.5 E[(D(G(z)) - 1)^2]."""
    return 0.5 * (fake_scores - 1).pow(2).mean()


def wasserstein_d(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """The critic minimises E[D(G(z))] - E[D(x)], i.e. maximises the Wasserstein estimate."""
    return fake_scores.mean() - real_scores.mean()


def wasserstein_g(fake_scores: Tensor) -> Tensor:
    return -fake_scores.mean()


def hinge_d(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """Geometric GAN / SNGAN hinge: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]."""
    return F.relu(1 - real_scores).mean() + F.relu(1 + fake_scores).mean()


def hinge_g(fake_scores: Tensor) -> Tensor:
    return -fake_scores.mean()


class GANLoss:
    """A D loss and a G loss over logits, how to show D's output, and the penalties that go with them."""

    name = "gan"

    def __init__(self, r1: float = 0.0, r1_every: int = 1, gp: float = 0.0, clip: float | None = None):
        if r1 < 0 or gp < 0 or r1_every < 1 or (clip is not None and clip <= 0):
            raise UserError(f"loss: r1={r1}, gp={gp} must be >= 0, r1_every={r1_every} >= 1, clip={clip} > 0 or null")
        self.r1, self.r1_every, self.gp, self.clip = float(r1), int(r1_every), float(gp), clip

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def g(self, fake_logits: Tensor) -> Tensor:
        raise NotImplementedError

    def output(self, logits: Tensor) -> Tensor:
        """What D(x) means for this loss: a probability for BCE losses, the raw score otherwise."""
        return logits

    def extra_stats(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in vars(self).items())})"


def _check_real_label(real_label: float) -> float:
    if not 0.0 < real_label <= 1.0:
        raise UserError(f"loss.real_label={real_label}: use a target in (0, 1], e.g. 0.9 for one-sided smoothing")
    return float(real_label)


class BCE(GANLoss):
    """Binary cross-entropy with the non-saturating generator loss (the default of every seed)."""

    name = "bce"

    def __init__(self, real_label: float = 1.0, **penalties):
        super().__init__(**penalties)
        self.real_label = _check_real_label(real_label)

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
    """Least-squares GAN with the 1/2 factors of the CS231n formulas; real_label < 1 smooths D's target."""

    name = "lsgan"

    def __init__(self, real_label: float = 1.0, **penalties):
        super().__init__(**penalties)
        self.real_label = _check_real_label(real_label)

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return lsgan_d(real_logits, fake_logits, self.real_label)

    def g(self, fake_logits: Tensor) -> Tensor:
        return lsgan_g(fake_logits)


class Wasserstein(GANLoss):
    """WGAN: a linear critic kept 1-Lipschitz by weight clipping (clip) or a gradient penalty (gp)."""

    name = "wgan"

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return wasserstein_d(real_logits, fake_logits)

    def g(self, fake_logits: Tensor) -> Tensor:
        return wasserstein_g(fake_logits)

    def extra_stats(self, real_logits: Tensor, fake_logits: Tensor) -> dict[str, Tensor]:
        # the critic's estimate of the Wasserstein distance: should fall as G improves
        return {"D/wasserstein_estimate": (real_logits.mean() - fake_logits.mean()).detach()}


class Hinge(GANLoss):
    """Hinge loss of SNGAN / BigGAN: D pushes real scores above 1 and fake below -1."""

    name = "hinge"

    def d(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        return hinge_d(real_logits, fake_logits)

    def g(self, fake_logits: Tensor) -> Tensor:
        return hinge_g(fake_logits)
