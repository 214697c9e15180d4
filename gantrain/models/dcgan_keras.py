"""Seed 004's Keras DCGAN: encoder blocks (5x5 convs, BN, LeakyReLU 0.3) and decoder blocks, capacity c.

D: 4 encoder blocks (conv 5x5 'same', BN, conv 5x5 stride 2 'same', BN, LeakyReLU 0.3) with c, 2c, 4c,
8c filters -> global average pooling -> dense logit. G: dense to 4x4x8c + BN -> decoder blocks
(ConvT 5x5 stride 2 'same', BN, LeakyReLU 0.3) with 4c, 2c, c, c filters -> conv 5x5 tanh. Keras
defaults kept: Glorot-uniform weights, zero biases, BatchNorm momentum 0.99 and epsilon 1e-3.
"""

from collections.abc import Sequence

from torch import Tensor, nn

from gantrain.models.layers import freeze_blocks
from gantrain.models.shapes import image_shape, power_of_two_blocks


def keras_bn(channels: int, dims: int = 2) -> nn.Module:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=1e-3, momentum=0.01)  # Keras momentum 0.99 is PyTorch's 0.01


def glorot(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        nn.init.zeros_(module.bias)


def encoder_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 5, 1, 2), keras_bn(c_out), nn.Conv2d(c_out, c_out, 5, 2, 2), keras_bn(c_out),
            nn.LeakyReLU(0.3)]


def decoder_block(c_in: int, c_out: int) -> list[nn.Module]:
    # 'same' padding with stride 2 doubles the size: padding 2 and one extra row/column of output
    return [nn.ConvTranspose2d(c_in, c_out, 5, 2, 2, output_padding=1), keras_bn(c_out), nn.LeakyReLU(0.3)]


class Generator(nn.Module):
    def __init__(self, shape: Sequence[int], z_dim: int = 100, capacity: int = 16):
        super().__init__()
        channels, size = image_shape(shape, "dcgan_keras")
        blocks = power_of_two_blocks(size, "dcgan_keras", smallest=16)  # 4 for 64x64, as in the seed
        widths = [capacity * 2 ** max(2 - i, 0) for i in range(blocks)]  # 4c, 2c, c, c
        self.top = 8 * capacity
        self.project = nn.Sequential(nn.Linear(z_dim, 4 * 4 * self.top), keras_bn(4 * 4 * self.top, dims=1))
        layers: list[nn.Module] = []
        c_in = self.top
        for width in widths:
            layers += decoder_block(c_in, width)
            c_in = width
        layers += [nn.Conv2d(c_in, channels, 5, 1, 2), nn.Tanh()]
        self.decode = nn.Sequential(*layers)
        self.apply(glorot)

    def forward(self, z: Tensor) -> Tensor:
        return self.decode(self.project(z).view(z.shape[0], self.top, 4, 4))


class Discriminator(nn.Module):
    def __init__(self, shape: Sequence[int], capacity: int = 16, freeze: int = 0):
        super().__init__()
        channels, size = image_shape(shape, "dcgan_keras")
        power_of_two_blocks(size, "dcgan_keras", smallest=16)
        layers: list[nn.Module] = []
        c_in = channels
        for i in range(4):
            layers += encoder_block(c_in, capacity * 2**i)
            c_in = capacity * 2**i
        self.encode = nn.Sequential(*layers)
        self.dense = nn.Linear(c_in, 1)  # the seed's Dense(1, sigmoid): the sigmoid lives in the loss
        self.apply(glorot)
        freeze_blocks([self.encode[5 * i: 5 * i + 5] for i in range(4)], freeze, "dcgan_keras")  # FreezeD

    def forward(self, x: Tensor) -> Tensor:
        return self.dense(self.encode(x).mean(dim=(2, 3))).flatten()  # global average pooling
