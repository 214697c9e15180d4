"""gantrain: config-driven GAN training with PyTorch and Hydra."""

__version__ = "0.2.0"
