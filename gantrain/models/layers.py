"""Small building blocks shared by the architectures: normalisation by name, label inputs, BatchNorm detection."""

from torch import Tensor, nn

from gantrain.errors import UserError

NORMS = ("none", "batch", "layer", "instance")


def norm2d(kind: str, channels: int) -> nn.Module:
    """A 2-D normalisation layer by name; `layer` normalises over (C, H, W) as WGAN-GP's critic does."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":
        return nn.GroupNorm(1, channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"norm={kind}: use one of {', '.join(NORMS)}")


def norm1d(kind: str, features: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm1d(features)
    if kind in ("layer", "instance"):
        return nn.LayerNorm(features)
    if kind == "none":
        return nn.Identity()
    raise UserError(f"norm={kind}: use one of {', '.join(NORMS)}")


def label_planes(labels: Tensor, num_classes: int, height: int, width: int) -> Tensor:
    """(B,) class indices -> (B, K, H, W) one-hot planes to concatenate with an image (conditional D)."""
    one_hot = nn.functional.one_hot(labels, num_classes).float()
    return one_hot.view(-1, num_classes, 1, 1).expand(-1, -1, height, width)


def has_batch_norm(network: nn.Module) -> bool:
    """Whether a network holds BatchNorm layers (which mix the samples of a batch)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules())
