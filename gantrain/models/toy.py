"""Seed 002's toy nets for 2-D points: a single linear generator and a 2-5-3-1 tanh discriminator."""

from collections.abc import Sequence

from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.init import dcgan_init
from gantrain.models.layers import freeze_blocks


def _point_dim(shape: Sequence[int]) -> int:
    if len(shape) != 1:
        raise UserError(f"model=toy works on points, but the data has samples of shape {tuple(shape)}: use data=gaussian2d")
    return int(shape[0])


class Generator(nn.Module):
    """One Linear(z_dim, D) layer, weights N(0, 0.02) and zero bias: it only has to learn A and b."""

    def __init__(self, shape: Sequence[int], z_dim: int = 2):
        super().__init__()
        self.model = nn.Sequential(nn.Linear(z_dim, _point_dim(shape)))
        self.apply(dcgan_init)

    def forward(self, z: Tensor) -> Tensor:
        return self.model(z)


class Discriminator(nn.Module):
    """D -> 5 -> 3 -> 1 with tanh between, weights N(0, 0.02) and zero biases; outputs logits."""

    def __init__(self, shape: Sequence[int], freeze: int = 0):
        super().__init__()
        freeze_blocks([], freeze, "toy")  # no blocks: FreezeD is refused
        self.model = nn.Sequential(
            nn.Linear(_point_dim(shape), 5), nn.Tanh(), nn.Linear(5, 3), nn.Tanh(), nn.Linear(3, 1),
        )
        self.apply(dcgan_init)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x).flatten()
