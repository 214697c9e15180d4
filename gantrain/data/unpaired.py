"""Two unpaired image domains for CycleGAN, in the pytorch-CycleGAN-and-pix2pix layout:
root/trainA, root/trainB (and testA, testB), read by the folder source (so linked folders are followed).
Each domain is decoded once at `load_size` into memory (cached in the user's cache folder, never beside the
data); each step takes a random crop of `image_size` and a random horizontal flip.

Batches are {"A": (B, C, H, W), "B": (B, C, H, W)} in [-1, 1]. A is walked in a shuffled order per
epoch, B drawn at random (the original's unaligned dataset); both, and the crops and flips, come from
generators seeded by (seed, epoch, step, rank), so a resumed run sees exactly the same batches.
"""

from pathlib import Path

import torch
from torch import Tensor

from gantrain.data.base import Data, TensorData
from gantrain.data.batches import Batches, epoch_order, fits_on_device, to_device
from gantrain.data.folder import folder
from gantrain.data.pixels import to_model_range
from gantrain.errors import UserError


def load_domain(root: Path, split: str, domain: str, load_size: int, channels: int, workers: int) -> Tensor:
    path = root / f"{split}{domain}"
    if not path.is_dir():
        raise UserError(f"data.root={root} has no {split}{domain}/ folder: an unpaired set holds trainA/, trainB/ "
                        f"(and testA/, testB/), as in the CycleGAN datasets")
    data = folder(str(path), image_size=load_size, channels=channels, in_memory=True, workers=workers, name=f"{split}{domain}")
    assert isinstance(data, TensorData)
    return data.x


class UnpairedData(Data):
    batch_keys = ("A", "B")

    def __init__(self, a: Tensor, b: Tensor, image_size: int, hflip: bool, root: str, name: str = "unpaired",
                 test: tuple[Tensor, Tensor] | None = None):
        self.a, self.b, self.test, self.image_size, self.hflip = a, b, test, image_size, hflip
        self.name, self.root, self.num_classes = name, root, 0
        self.shape = (a.shape[1], image_size, image_size)

    def __len__(self) -> int:
        return len(self.a)  # an epoch walks domain A once

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1) -> "UnpairedBatches":
        self._check_batch_size(batch_size * world)
        return UnpairedBatches(self, batch_size, seed, device, rank, world)

    def centre(self, x: Tensor) -> Tensor:
        top = (x.shape[-1] - self.image_size) // 2
        return to_model_range(x[..., top:top + self.image_size, top:top + self.image_size])

    def preview(self, n: int, seed: int = 0) -> Tensor:
        """Centre crops: the first half of the grid from A, the rest from B."""
        g = torch.Generator().manual_seed(seed)
        a = self.a[torch.randperm(len(self.a), generator=g)[:(n + 1) // 2]]
        b = self.b[torch.randperm(len(self.b), generator=g)[:n // 2]]
        return self.centre(torch.cat([a, b]))

    def fixed_batch(self, n: int, seed: int = 0) -> dict[str, Tensor]:
        """n images of each domain for the translation grids: the test split's first ones when there is one."""
        a, b = self.test if self.test is not None else (self.a, self.b)
        pick = lambda x: x[torch.arange(n) % len(x)]  # noqa: E731  (repeats when a domain has fewer than n)
        return {"A": self.centre(pick(a)), "B": self.centre(pick(b))}


class UnpairedBatches(Batches):
    def __init__(self, data: UnpairedData, batch_size: int, seed: int, device: torch.device, rank: int, world: int):
        super().__init__(len(data.a), batch_size, seed, device, data.hflip, rank, world)
        # both domains on the training device when they fit there (batches.fits_on_device), else in host memory
        self.resident = fits_on_device(data.a.nbytes + data.b.nbytes, device)
        home = device if self.resident else torch.device("cpu")
        self.data, self.a, self.b = data, data.a.to(home), data.b.to(home)
        self._order_epoch = -1

    def __next__(self) -> dict[str, Tensor]:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order_epoch != self.epoch:
            self._order, _ = epoch_order(self.n, self.seed, self.epoch)
            self._order_epoch = self.epoch
        g = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 1_000_003 + self.position) * 64 + self.rank)
        idx_a = self._order[self.span(self.position)]
        idx_b = torch.randint(len(self.b), (self.batch_size,), generator=g)
        self.position += 1
        return {"A": self.augment(self.a, idx_a, g), "B": self.augment(self.b, idx_b, g)}

    def augment(self, images: Tensor, idx: Tensor, g: torch.Generator) -> Tensor:
        """A random image_size crop of each image, flipped left-right with probability 1/2 (hflip)."""
        size, room = self.data.image_size, images.shape[-1] - self.data.image_size
        offsets = torch.randint(room + 1, (len(idx), 2), generator=g).tolist()
        flips = (torch.rand(len(idx), generator=g) < 0.5).tolist()
        crops = []
        for i, (top, left), flip in zip(idx.tolist(), offsets, flips):
            crop = images[i, :, top:top + size, left:left + size]
            crops.append(crop.flip(-1) if flip and self.hflip else crop)
        stacked = torch.stack(crops)
        return to_model_range(stacked if self.resident else to_device(stacked, self.device))


def unpaired(root: str, image_size: int = 256, load_size: int | None = None, channels: int = 3, hflip: bool = True,
             workers: int = 2) -> UnpairedData:
    """trainA/ and trainB/ under root (testA/ and testB/ for the grids when present)."""
    load_size = load_size or round(image_size * 286 / 256)  # the CycleGAN code's 286 -> 256 margin
    if load_size < image_size:
        raise UserError(f"data.load_size={load_size} is smaller than data.image_size={image_size}: images are "
                        f"resized to load_size, then randomly cropped to image_size")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise UserError(f"data.root={root} does not exist: point it at a folder with trainA/ and trainB/")
    a, b = (load_domain(base, "train", d, load_size, channels, workers) for d in "AB")
    test = None
    if (base / "testA").is_dir() and (base / "testB").is_dir():
        test = tuple(load_domain(base, "test", d, load_size, channels, workers) for d in "AB")
    return UnpairedData(a, b, image_size, hflip, root=str(base), test=test)
