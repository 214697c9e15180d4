"""Small building blocks shared by the architectures: normalisation by name, label inputs, BatchNorm detection,
FreezeD's frozen blocks and minibatch standard deviation groups."""

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


def freeze_blocks(blocks: list[nn.Module], n: int, model: str) -> None:
    """FreezeD (Mo et al. 2020): a discriminator's first n blocks, input side first, left out of training.

    A discriminator offers FreezeD by taking `freeze` and calling this at the end of its __init__ with its blocks
    (the layers before its output head); one without blocks passes none, so any freeze > 0 is refused. A frozen
    block keeps every tensor it was built or loaded with: its parameters need no gradient (the system leaves them
    out of D's optimizer: no optimizer state, no weight decay), and its BatchNorm layers still normalise with each
    batch's statistics, as D always does in training, without updating their running statistics.
    """
    if n < 0:
        raise UserError(f"model.discriminator.freeze={n}: use 0 (every block trains) or the number of D's first "
                        f"blocks to freeze")
    if n and not blocks:
        raise UserError(f"model.discriminator.freeze={n}: model={model}'s discriminator has no blocks to freeze "
                        f"(FreezeD is for the block discriminators of model=dcgan, resnet, infogan and dcgan_keras); "
                        f"drop it")
    if n > len(blocks):
        raise UserError(f"model.discriminator.freeze={n}: model={model}'s discriminator has {len(blocks)} blocks at "
                        f"this image size; freeze at most {len(blocks)} (its output layer always trains)")
    for block in blocks[:n]:
        block.requires_grad_(False)
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.track_running_stats = False  # in training: batch statistics, running ones left as they are


def minibatch_std_group(network: nn.Module) -> int:
    """The largest group of samples a network's minibatch standard deviation layers compute statistics over, 0 when
    it has none (or only whole-batch ones). Such a layer declares its group as `mbstd_group_size` (StyleGAN2's
    discriminator epilogue does; None means the whole batch)."""
    groups = [vars(m).get("mbstd_group_size") for m in network.modules()]
    return max([int(g) for g in groups if g], default=0)
