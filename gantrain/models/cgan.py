"""The conditional GAN of Mirza & Osindero as PyTorch-GAN writes it: label embeddings joined to z and x."""

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.layers import freeze_blocks


def _block(n_in: int, n_out: int, normalize: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Linear(n_in, n_out)]
    if normalize:
        layers.append(nn.BatchNorm1d(n_out, 0.8))  # eps 0.8, exactly as PyTorch-GAN's cgan.py
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


def _check(num_classes: int) -> None:
    if num_classes <= 0:
        raise UserError("model=cgan needs labelled data (data with class labels, e.g. data=mnist)")


class Generator(nn.Module):
    """[z, embed(y)] -> 128 -> 256 -> 512 -> 1024 (BN, LeakyReLU 0.2) -> C*H*W tanh."""

    def __init__(self, shape: Sequence[int], z_dim: int = 100, num_classes: int = 0):
        super().__init__()
        _check(num_classes)
        self.shape = tuple(shape)
        self.embed = nn.Embedding(num_classes, num_classes)
        self.net = nn.Sequential(
            *_block(z_dim + num_classes, 128, normalize=False), *_block(128, 256), *_block(256, 512), *_block(512, 1024),
            nn.Linear(1024, math.prod(self.shape)), nn.Tanh(),
        )

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        return self.net(torch.cat([z, self.embed(labels)], dim=1)).view(z.shape[0], *self.shape)


class Discriminator(nn.Module):
    """[x, embed(y)] -> 512 -> 512 (dropout 0.4) -> 512 (dropout 0.4) -> 1, LeakyReLU 0.2; logits."""

    def __init__(self, shape: Sequence[int], num_classes: int = 0, freeze: int = 0):
        super().__init__()
        _check(num_classes)
        freeze_blocks([], freeze, "cgan")  # no blocks: FreezeD is refused
        self.embed = nn.Embedding(num_classes, num_classes)
        self.net = nn.Sequential(
            nn.Linear(math.prod(shape) + num_classes, 512), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512), nn.Dropout(0.4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 512), nn.Dropout(0.4), nn.LeakyReLU(0.2, inplace=True),
            nn.Linear(512, 1),
        )

    def forward(self, x: Tensor, labels: Tensor) -> Tensor:
        return self.net(torch.cat([x.flatten(1), self.embed(labels)], dim=1)).flatten()
