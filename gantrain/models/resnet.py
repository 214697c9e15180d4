"""The SNGAN ResNet generator and discriminator (Miyato et al.) as mimicry builds them for 32x32 images.

G: z -> Linear to a 4x4x256 map -> up-sampling residual blocks (BN-ReLU-conv3x3 twice, nearest x2)
-> BN-ReLU-conv3x3-tanh. D: residual blocks of width 128 (the first two halve the size) -> ReLU ->
global sum pooling -> Linear; spectral norm comes from `model.spectral_norm` (true in resnet.yaml).
Other powers of two add or drop up-/down-sampling blocks. Conditional: G reads a label embedding with
z; D adds the projection term <embed(y), h> (Miyato & Koyama 2018).
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.models.layers import freeze_blocks
from gantrain.models.shapes import image_shape, power_of_two_blocks


def _xavier(module: nn.Module, gain: float) -> nn.Module:
    nn.init.xavier_uniform_(module.weight, gain)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


class GBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.b1, self.b2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
        self.c1 = _xavier(nn.Conv2d(channels, channels, 3, 1, 1), math.sqrt(2))
        self.c2 = _xavier(nn.Conv2d(channels, channels, 3, 1, 1), math.sqrt(2))
        self.c_sc = _xavier(nn.Conv2d(channels, channels, 1, 1, 0), 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.b1(x)), scale_factor=2, mode="nearest")
        h = self.c2(F.relu(self.b2(self.c1(h))))
        return h + self.c_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, downsample: bool, first: bool = False):
        super().__init__()
        self.downsample, self.first = downsample, first
        self.c1 = _xavier(nn.Conv2d(c_in, c_out, 3, 1, 1), math.sqrt(2))
        self.c2 = _xavier(nn.Conv2d(c_out, c_out, 3, 1, 1), math.sqrt(2))
        self.c_sc = _xavier(nn.Conv2d(c_in, c_out, 1, 1, 0), 1.0) if (c_in != c_out or downsample) else None

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.first else F.relu(x)  # the first ("optimized") block sees the image itself
        h = self.c2(F.relu(self.c1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        shortcut = x
        if self.first:  # pool, then project: as mimicry's DBlockOptimized
            shortcut = self.c_sc(F.avg_pool2d(x, 2))
        elif self.c_sc is not None:
            shortcut = self.c_sc(x)
            shortcut = F.avg_pool2d(shortcut, 2) if self.downsample else shortcut
        return h + shortcut


class Generator(nn.Module):
    def __init__(self, shape: Sequence[int], z_dim: int = 128, width: int = 256, num_classes: int = 0):
        super().__init__()
        channels, size = image_shape(shape, "resnet")
        blocks = power_of_two_blocks(size, "resnet", smallest=16)
        self.width = width
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None
        self.l1 = _xavier(nn.Linear(z_dim + num_classes, 4 * 4 * width), 1.0)
        self.blocks = nn.Sequential(*[GBlock(width) for _ in range(blocks)])
        self.b_out = nn.BatchNorm2d(width)
        self.c_out = _xavier(nn.Conv2d(width, channels, 3, 1, 1), 1.0)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        h = self.blocks(self.l1(z).view(z.shape[0], self.width, 4, 4))
        return torch.tanh(self.c_out(F.relu(self.b_out(h))))


class Discriminator(nn.Module):
    def __init__(self, shape: Sequence[int], width: int = 128, num_classes: int = 0, freeze: int = 0):
        super().__init__()
        channels, size = image_shape(shape, "resnet")
        downs = power_of_two_blocks(size, "resnet", smallest=16) - 1  # 32x32: two halvings, to 8x8
        layers = [DBlock(channels, width, downsample=True, first=True)]
        layers += [DBlock(width, width, downsample=i < downs - 1) for i in range(downs + 1)]
        self.blocks = nn.Sequential(*layers)
        self.l_out = _xavier(nn.Linear(width, 1), 1.0)
        self.embed = nn.Embedding(num_classes, width) if num_classes else None  # projection
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)
        freeze_blocks(list(self.blocks), freeze, "resnet")  # FreezeD: the first residual blocks

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = F.relu(self.blocks(x)).sum(dim=(2, 3))  # (B, width): global sum pooling
        out = self.l_out(h).flatten()
        if self.embed is not None:
            out = out + (self.embed(labels) * h).sum(dim=1)
        return out
