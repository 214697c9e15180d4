"""DCGAN (Radford et al.) as in the PyTorch tutorial, sized by the image: 64x64 is the tutorial net.

Options beyond the tutorial: `norm` (none|batch|layer|instance; a WGAN-GP critic must not use batch)
and conditioning on class labels (`num_classes` > 0): G reads a label embedding concatenated with z,
D reads one-hot label planes concatenated with the image.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from gantrain.models.init import dcgan_init
from gantrain.models.layers import freeze_blocks, label_planes, norm2d
from gantrain.models.shapes import image_shape, power_of_two_blocks


class Generator(nn.Module):
    """z (B, z_dim) -> ConvT 4x4 to a 4x4 map, then stride-2 ConvT-norm-ReLU blocks halving width, tanh."""

    def __init__(self, shape: Sequence[int], z_dim: int = 100, width: int = 64, norm: str = "batch", num_classes: int = 0):
        super().__init__()
        channels, size = image_shape(shape, "dcgan")
        blocks = power_of_two_blocks(size, "dcgan")
        self.num_classes = num_classes
        self.embed = nn.Embedding(num_classes, num_classes) if num_classes else None  # label -> extra z dims
        ch = width * 2 ** (blocks - 1)  # 512 for width 64 at 64x64, as in the tutorial
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim + num_classes, ch, 4, 1, 0, bias=False), norm2d(norm, ch), nn.ReLU(True)]
        for _ in range(blocks - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), norm2d(norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)  # named `main` so tutorial state dicts load as they are
        self.apply(dcgan_init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.main(z.view(z.shape[0], -1, 1, 1))  # (B, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    """(B, C, H, W) -> stride-2 Conv-norm-LeakyReLU(0.2) blocks doubling width (no norm first) -> 4x4 conv logit.
    `freeze`: the first blocks frozen (FreezeD, gantrain.models.layers.freeze_blocks)."""

    def __init__(self, shape: Sequence[int], width: int = 64, norm: str = "batch", num_classes: int = 0, freeze: int = 0):
        super().__init__()
        channels, size = image_shape(shape, "dcgan")
        blocks = power_of_two_blocks(size, "dcgan")
        self.num_classes = num_classes
        layers: list[nn.Module] = [nn.Conv2d(channels + num_classes, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        ch = width
        for _ in range(blocks - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), norm2d(norm, ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]  # the tutorial's Sigmoid lives in the loss
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)
        # the blocks: conv-LeakyReLU, then (blocks - 1) x conv-norm-LeakyReLU; the last conv is the output head
        freeze_blocks([self.main[0:2]] + [self.main[2 + 3 * i: 5 + 3 * i] for i in range(blocks - 1)], freeze, "dcgan")

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            x = torch.cat([x, label_planes(labels, self.num_classes, *x.shape[2:]).to(x.dtype)], dim=1)
        return self.main(x).flatten()  # (B,) logits
