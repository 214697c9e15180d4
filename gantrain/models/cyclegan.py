"""CycleGAN's networks (Zhu et al. 2017; pytorch-CycleGAN-and-pix2pix): a ResNet generator with reflection
padding and instance norm, and the 70x70 PatchGAN discriminator. Both are fully convolutional."""

import torch
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.init import dcgan_init


def norm_layer(norm: str, channels: int) -> nn.Module:
    """instance (the paper's, without affine parameters or running statistics), batch, or none."""
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "none":
        return nn.Identity()
    raise UserError(f"model norm={norm}: CycleGAN's networks take instance, batch or none")


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, norm: str):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), norm_layer(norm, channels),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """c7s1-64, d128, d256, n_blocks x R256, u128, u64, c7s1-C, tanh: an image to an image of the same size."""

    def __init__(self, shape: list[int], width: int = 64, n_blocks: int = 9, norm: str = "instance"):
        super().__init__()
        channels, height, wide = shape
        if height % 4 or wide % 4:
            raise UserError(f"CycleGAN's generator halves the image twice: data.image_size={height} must be a "
                            f"multiple of 4 (e.g. 256, 128, 32)")
        if n_blocks < 1:
            raise UserError(f"n_blocks={n_blocks}: use 9 (256x256 images) or 6 (128x128 and smaller)")
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(channels, width, 7), norm_layer(norm, width), nn.ReLU(True)]
        for mult in (1, 2):  # downsample
            layers += [nn.Conv2d(width * mult, width * mult * 2, 3, stride=2, padding=1),
                       norm_layer(norm, width * mult * 2), nn.ReLU(True)]
        layers += [ResidualBlock(width * 4, norm) for _ in range(n_blocks)]
        for mult in (4, 2):  # upsample
            layers += [nn.ConvTranspose2d(width * mult, width * mult // 2, 3, stride=2, padding=1, output_padding=1),
                       norm_layer(norm, width * mult // 2), nn.ReLU(True)]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(width, channels, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)  # N(0, 0.02), as the CycleGAN code's init_type=normal

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """C64 (no norm) - C128 - C256 stride 2, C512 stride 1, then a 1-channel map: with n_layers=3 each
    output judges a 70x70 patch. Returns the map (B, 1, h, w); the losses average over it."""

    def __init__(self, shape: list[int], width: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        channels = shape[0]
        layers = [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            layers += [nn.Conv2d(width * prev, width * mult, 4, stride=2 if n < n_layers else 1, padding=1),
                       norm_layer(norm, width * mult), nn.LeakyReLU(0.2, True)]
        layers += [nn.Conv2d(width * mult, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)
        self.apply(dcgan_init)
        with torch.no_grad():  # too small an image leaves no patch to judge: say so now, not mid-training
            probe = torch.zeros(1, *shape)
            try:
                self.net(probe)
            except RuntimeError as err:
                raise UserError(f"images of {shape[1]}x{shape[2]} are too small for a PatchGAN with "
                                f"n_layers={n_layers}: raise data.image_size or lower model.discriminator.n_layers") from err

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
