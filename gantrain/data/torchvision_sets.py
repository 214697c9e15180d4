"""MNIST, Fashion-MNIST and CIFAR-10 read through torchvision from `root`, held in memory as uint8."""

from pathlib import Path

import numpy as np
import torch
import torchvision

from gantrain.data.base import TensorData
from gantrain.data.transforms import resize_center_crop
from gantrain.errors import UserError

_FILES = {
    "mnist": "MNIST/raw/train-images-idx3-ubyte (and the other three idx files)",
    "fashion_mnist": "FashionMNIST/raw/train-images-idx3-ubyte (and the other three idx files)",
    "cifar10": "cifar-10-batches-py/data_batch_1..5 and test_batch",
}


def _open(name: str, cls, root: str, train: bool, download: bool):
    try:
        return cls(root=str(Path(root).expanduser()), train=train, download=download)
    except RuntimeError as err:
        if download:
            raise UserError(f"data={name}: download into {root} failed ({err}); fetch the files by hand") from err
        raise UserError(
            f"data={name}: files not found under data.root={root} (expected {root}/{_FILES[name]}); "
            f"put them there, point data.root at their parent folder, or add data.download=true"
        ) from err


def _load(name: str, cls, root: str, train: bool, download: bool, image_size: int, hflip: bool) -> TensorData:
    ds = _open(name, cls, root, train, download)
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> (N, C, H, W) uint8
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return TensorData(name, resize_center_crop(images.contiguous(), image_size), labels, num_classes=10, hflip=hflip)


def mnist(root: str = "data", train: bool = True, download: bool = False, image_size: int = 28, hflip: bool = False):
    """The 60,000 MNIST training digits (or the 10,000 test digits with train=false)."""
    return _load("mnist", torchvision.datasets.MNIST, root, train, download, image_size, hflip)


def fashion_mnist(root: str = "data", train: bool = True, download: bool = False, image_size: int = 28, hflip: bool = False):
    """Zalando's Fashion-MNIST: 60,000 28x28 grayscale clothing images in 10 classes."""
    return _load("fashion_mnist", torchvision.datasets.FashionMNIST, root, train, download, image_size, hflip)


def cifar10(root: str = "data", train: bool = True, download: bool = False, image_size: int = 32, hflip: bool = False):
    """CIFAR-10: 50,000 32x32 colour images in 10 classes."""
    return _load("cifar10", torchvision.datasets.CIFAR10, root, train, download, image_size, hflip)
