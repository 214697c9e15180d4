"""The two ways gantrain holds a dataset: one tensor in memory, or a torch Dataset streamed by a DataLoader."""

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from gantrain.data.batches import Batches, LoaderBatches, MemoryBatches
from gantrain.data.pixels import to_model_range
from gantrain.errors import UserError


def take(images: Tensor, labels: Tensor | None, limit: int | None, seed: int, name: str) -> tuple[Tensor, Tensor | None]:
    """data.limit: only `limit` of a set's images (and their labels), the first of a permutation drawn from `seed`
    (data.limit_seed, not the run's seed: every run sees the same images, and a smaller limit's are among a larger's)."""
    if limit is None:
        return images, labels
    if limit <= 0 or limit > len(images):
        raise UserError(f"data.limit={limit}: data={name} has {len(images)} images; take between 1 and {len(images)} "
                        f"of them, or null for all")
    chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    return images[chosen], labels[chosen] if labels is not None else None


class Data:
    """What the rest of gantrain sees of a dataset: sample shape, class count, batches, a preview."""

    name: str
    shape: tuple[int, ...]  # (C, H, W) for images, (D,) for points
    num_classes: int  # 0 when the set has no labels
    root: str | None = None  # where the files are (caches go under the user's cache directory); None: bundled
    batch_keys: tuple[str, ...] = ("real",)  # what its batches hold (besides "label"); unpaired data: ("A", "B")
    workers: int = 0  # DataLoader worker processes that read it (streamed data only)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def __len__(self) -> int:
        raise NotImplementedError

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1) -> Batches:
        """Endless batches of this rank's shard (rank/world under torchrun), resumable exactly."""
        raise NotImplementedError

    def preview(self, n: int, seed: int = 0) -> Tensor:
        """n samples chosen at random, in the model's range, for the 'real' grid."""
        raise NotImplementedError

    def fixed_batch(self, n: int, seed: int = 0) -> dict[str, Tensor]:
        """n examples under the batch keys, chosen once for a run's fixed grids (a system may show them)."""
        return {"real": self.preview(n, seed)}

    def _check_batch_size(self, batch_size: int) -> None:
        """batch_size: of all ranks together."""
        if batch_size > len(self):
            raise UserError(
                f"a step takes {batch_size} samples (trainer.batch_size times the number of processes), more than "
                f"data={self.name} has ({len(self)}): lower trainer.batch_size"
            )


class TensorData(Data):
    """A dataset decoded once into one tensor: uint8 images (N, C, H, W) or float points (N, D)."""

    def __init__(self, name: str, x: Tensor, labels: Tensor | None = None, num_classes: int = 0, hflip: bool = False,
                 root: str | None = None):
        if len(x) == 0:
            raise UserError(f"data={name} is empty: check data.root")
        self.name, self.x, self.labels, self.root = name, x, labels, root
        self.shape = tuple(x.shape[1:])
        self.num_classes = num_classes if labels is not None else 0
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1) -> MemoryBatches:
        self._check_batch_size(batch_size * world)
        return MemoryBatches(self.x, self.labels, batch_size, seed, device, self.hflip and self.is_image, rank, world)

    def preview(self, n: int, seed: int = 0) -> Tensor:
        idx = torch.randperm(len(self.x), generator=torch.Generator().manual_seed(seed))[:n]
        return to_model_range(self.x[idx])


class StreamData(Data):
    """A dataset too large to hold in memory: a torch Dataset of (uint8 (C, H, W), label) read by workers."""

    def __init__(
        self, name: str, dataset: Dataset, shape: Sequence[int], num_classes: int = 0, hflip: bool = False, workers: int = 2,
        root: str | None = None,
    ):
        if len(dataset) == 0:
            raise UserError(f"data={name} is empty: check data.root")
        self.name, self.dataset, self.shape, self.root = name, dataset, tuple(shape), root
        self.num_classes, self.hflip, self.workers = num_classes, hflip, workers

    def __len__(self) -> int:
        return len(self.dataset)

    def batches(self, batch_size: int, seed: int, device: torch.device, rank: int = 0, world: int = 1) -> LoaderBatches:
        self._check_batch_size(batch_size * world)
        return LoaderBatches(self.dataset, batch_size, seed, device, self.hflip, self.workers, rank, world)

    def preview(self, n: int, seed: int = 0) -> Tensor:
        idx = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed))[:n]
        return to_model_range(torch.stack([self.dataset[int(i)][0] for i in idx]))
