"""DCGAN (Radford et al.) as in the PyTorch tutorial, sized by the image: 64x64 is the tutorial net."""

from collections.abc import Sequence

from torch import Tensor, nn

from gantrain.models.init import dcgan_init
from gantrain.models.shapes import image_shape, power_of_two_blocks


class Generator(nn.Module):
    """z (B, z_dim) -> ConvT 4x4 to a 4x4 map, then stride-2 ConvT-BN-ReLU blocks halving width, tanh."""

    def __init__(self, shape: Sequence[int], z_dim: int = 100, width: int = 64):
        super().__init__()
        channels, size = image_shape(shape, "dcgan")
        blocks = power_of_two_blocks(size, "dcgan")
        ch = width * 2 ** (blocks - 1)  # 512 for width 64 at 64x64, as in the tutorial
        layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, ch, 4, 1, 0, bias=False), nn.BatchNorm2d(ch), nn.ReLU(True)]
        for _ in range(blocks - 1):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ConvTranspose2d(ch, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)  # named `main` so tutorial state dicts load as they are
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.main(z.view(z.shape[0], -1, 1, 1))  # (B, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    """(B, C, H, W) -> stride-2 Conv-BN-LeakyReLU(0.2) blocks doubling width (no BN first) -> 4x4 conv logit."""

    def __init__(self, shape: Sequence[int], width: int = 64):
        super().__init__()
        channels, size = image_shape(shape, "dcgan")
        blocks = power_of_two_blocks(size, "dcgan")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        ch = width
        for _ in range(blocks - 1):
            layers += [nn.Conv2d(ch, ch * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ch * 2), nn.LeakyReLU(0.2, True)]
            ch *= 2
        layers += [nn.Conv2d(ch, 1, 4, 1, 0, bias=False)]  # the tutorial's Sigmoid lives in the loss
        self.main = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.main(x).flatten()  # (B,) logits

