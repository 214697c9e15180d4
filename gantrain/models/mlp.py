"""Fully connected GANs: the CS231n vanilla nets (`mlp`) and seed 001's MLP with BatchNorm (`mlp_bn`)."""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gantrain.models.init import xavier_init, xavier_zero_bias_init
from gantrain.models.layers import freeze_blocks, norm1d


class Generator(nn.Module):
    """CS231n: z -> FC1024-ReLU-FC1024-ReLU-FC(C*H*W)-tanh (1,858,320 params at z_dim=4 for MNIST).

    Conditional (num_classes > 0): a label embedding is concatenated with z.
    """

    def __init__(self, shape: Sequence[int], z_dim: int = 96, hidden: int = 1024, num_classes: int = 0):
        super().__init__()
        self.shape = tuple(shape)
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        self.net = nn.Sequential(
            nn.Linear(z_dim + num_classes, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, math.prod(self.shape)), nn.Tanh(),
        )
        self.apply(xavier_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.net(z).view(z.shape[0], *self.shape)


class Discriminator(nn.Module):
    """CS231n: flatten -> FC256-LeakyReLU(0.01)-FC256-LeakyReLU(0.01)-FC1 (267,009 params for MNIST).

    `norm` (none|batch|layer) after the hidden layers; conditional: a label embedding joins the input.
    """

    def __init__(self, shape: Sequence[int], hidden: int = 256, norm: str = "none", num_classes: int = 0, freeze: int = 0):
        super().__init__()
        freeze_blocks([], freeze, "mlp")  # no blocks: FreezeD is refused
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        self.net = nn.Sequential(
            nn.Linear(math.prod(shape) + num_classes, hidden), norm1d(norm, hidden), nn.LeakyReLU(0.01),
            nn.Linear(hidden, hidden), norm1d(norm, hidden), nn.LeakyReLU(0.01),
            nn.Linear(hidden, 1),
        )
        self.apply(xavier_init)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = x.flatten(1)
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels)], dim=1)
        return self.net(x).flatten()  # (B,) logits


class BNGenerator(nn.Module):
    """Seed 001: z -> 256-ReLU -> 512-BN-ReLU -> 1024-BN-ReLU -> 2048-BN-ReLU -> C*H*W tanh (PyTorch default init);
    `width`: the first layer's size (the seed's 256), doubled at each layer after it."""

    def __init__(self, shape: Sequence[int], z_dim: int = 128, width: int = 256):
        super().__init__()
        self.shape = tuple(shape)
        sizes = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = [nn.Linear(z_dim, width), nn.ReLU(True)]
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.BatchNorm1d(n_out), nn.ReLU(True)]
        layers += [nn.Linear(sizes[-1], math.prod(self.shape)), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class BNDiscriminator(nn.Module):
    """Seed 001: flatten -> 1024-ReLU-512-ReLU-256-ReLU-1, Xavier weights and zero biases; outputs logits.
    `width`: the last hidden layer's size (the seed's 256), doubled at each layer before it."""

    def __init__(self, shape: Sequence[int], freeze: int = 0, width: int = 256):
        super().__init__()
        freeze_blocks([], freeze, "mlp_bn")  # no blocks: FreezeD is refused
        self.net = nn.Sequential(
            nn.Linear(math.prod(shape), 4 * width), nn.ReLU(True),
            nn.Linear(4 * width, 2 * width), nn.ReLU(True),
            nn.Linear(2 * width, width), nn.ReLU(True),
            nn.Linear(width, 1),
        )
        self.apply(xavier_zero_bias_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).flatten()
