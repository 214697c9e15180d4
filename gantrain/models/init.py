"""Weight initialisation schemes named by the recipes that use them."""

from torch import nn


def dcgan_init(module: nn.Module) -> None:
    """DCGAN paper / PyTorch tutorial: conv weights N(0, 0.02); BatchNorm weight N(1, 0.02), bias 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d)) and module.weight is not None:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def xavier_init(module: nn.Module) -> None:
    """CS231n `initialize_weights`: Xavier-uniform weights for linear and transposed-conv layers."""
    if isinstance(module, (nn.Linear, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(module.weight)


def xavier_zero_bias_init(module: nn.Module) -> None:
    """Seed 001's discriminator: Xavier-uniform linear weights and zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
