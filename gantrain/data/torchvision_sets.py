"""MNIST, Fashion-MNIST and CIFAR-10 read through torchvision from `root`, held in memory as uint8."""

from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import Dataset

from gantrain.data.base import Data, StreamData, TensorData, take
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


class TensorImages(Dataset):
    """uint8 images (N, C, H, W) and labels served one by one, for the DataLoader path (in_memory=false)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def _load(name: str, cls, root: str, train: bool, download: bool, image_size: int, hflip: bool,
          in_memory: bool = True, workers: int = 2, limit: int | None = None, limit_seed: int = 0) -> Data:
    ds = _open(name, cls, root, train, download)
    images = torch.as_tensor(np.asarray(ds.data))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # -> (N, C, H, W) uint8
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    images, labels = take(images, labels, limit, limit_seed, name)  # data.limit: a subset, chosen by data.limit_seed
    images = resize_center_crop(images.contiguous(), image_size)
    if in_memory:
        return TensorData(name, images, labels, num_classes=10, hflip=hflip, root=root)
    return StreamData(name, TensorImages(images, labels), images.shape[1:], num_classes=10, hflip=hflip, workers=workers,
                      root=root)


def mnist(
    root: str = "data", train: bool = True, download: bool = False, image_size: int = 28, hflip: bool = False,
    in_memory: bool = True, workers: int = 2, limit: int | None = None, limit_seed: int = 0,
) -> Data:
    """The 60,000 MNIST training digits (or the 10,000 test digits with train=false)."""
    return _load("mnist", torchvision.datasets.MNIST, root, train, download, image_size, hflip, in_memory, workers,
                 limit, limit_seed)


def fashion_mnist(
    root: str = "data", train: bool = True, download: bool = False, image_size: int = 28, hflip: bool = False,
    in_memory: bool = True, workers: int = 2, limit: int | None = None, limit_seed: int = 0,
) -> Data:
    """Zalando's Fashion-MNIST: 60,000 28x28 grayscale clothing images in 10 classes."""
    return _load("fashion_mnist", torchvision.datasets.FashionMNIST, root, train, download, image_size, hflip, in_memory,
                 workers, limit, limit_seed)


def cifar10(
    root: str = "data", train: bool = True, download: bool = False, image_size: int = 32, hflip: bool = False,
    in_memory: bool = True, workers: int = 2, limit: int | None = None, limit_seed: int = 0,
) -> Data:
    """CIFAR-10: 50,000 32x32 colour images in 10 classes."""
    return _load("cifar10", torchvision.datasets.CIFAR10, root, train, download, image_size, hflip, in_memory, workers,
                 limit, limit_seed)
