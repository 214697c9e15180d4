"""gantrain: config-driven GAN training with PyTorch and Hydra."""

__version__ = "0.3.0"
