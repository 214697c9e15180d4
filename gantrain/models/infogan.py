"""The CS231n DCGAN for MNIST: InfoGAN's generator (appendix C.1) and the TF-tutorial classifier as D."""

from collections.abc import Sequence

from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.init import xavier_init
from gantrain.models.layers import freeze_blocks


def _check_mnist_shape(shape: Sequence[int]) -> None:
    if tuple(shape) != (1, 28, 28):
        raise UserError(
            f"model=infogan is fixed to 1x28x28 images (MNIST-like) but the data is {'x'.join(map(str, shape))}: "
            "use data=mnist or fashion_mnist with data.image_size=28, or model=dcgan"
        )


class Generator(nn.Module):
    """z -> FC1024-ReLU-BN -> FC 7*7*128-ReLU-BN -> ConvT64 4x4 s2-ReLU-BN -> ConvT1 4x4 s2-tanh (28x28).
    `hidden` (1024) and `width` (64; the 7x7 maps have twice as many) are the recipe's; trainer=debug shrinks them."""

    def __init__(self, shape: Sequence[int], z_dim: int = 96, hidden: int = 1024, width: int = 64):
        super().__init__()
        _check_mnist_shape(shape)
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.ReLU(), nn.BatchNorm1d(hidden),
            nn.Linear(hidden, 7 * 7 * 2 * width), nn.ReLU(), nn.BatchNorm1d(7 * 7 * 2 * width),
            nn.Unflatten(1, (2 * width, 7, 7)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(), nn.BatchNorm2d(width),
            nn.ConvTranspose2d(width, 1, 4, 2, 1), nn.Tanh(),
        )
        self.apply(xavier_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # (B, 1, 28, 28)


class Discriminator(nn.Module):
    """conv32 5x5-LReLU(0.01)-maxpool -> conv64 5x5-LReLU-maxpool -> FC 4*4*64-LReLU -> FC1 logit; `freeze`: the
    first of those three blocks frozen (FreezeD). `width`: the first conv's channels (the recipe's 32)."""

    def __init__(self, shape: Sequence[int], freeze: int = 0, width: int = 32):
        super().__init__()
        _check_mnist_shape(shape)
        features = 4 * 4 * 2 * width
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2, 2),
            nn.Conv2d(width, 2 * width, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(features, features), nn.LeakyReLU(0.01),
            nn.Linear(features, 1),
        )
        self.apply(xavier_init)
        freeze_blocks([self.net[0:3], self.net[3:6], self.net[6:9]], freeze, "infogan")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()
