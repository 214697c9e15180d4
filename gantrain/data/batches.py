"""Endless, shuffled, resumable streams of batches; their state is (epoch, position) and nothing else.

Each epoch's order (and its random flips) comes from a generator seeded by (seed, epoch), so a run
resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen.
"""

import logging

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from gantrain.data.pixels import to_model_range

log = logging.getLogger(__name__)
# The labels a dataset gives a file it could not decode (-1 means "no label"); such rows are dropped and
# counted by reason.
UNREADABLE, TOO_LARGE = -2, -3
SKIP_REASONS = {
    TOO_LARGE: "too large for PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS)",
    UNREADABLE: "unreadable (not an image, or damaged)",
}
Batch = dict[str, Tensor]  # {"real": (B, C, H, W) float in [-1, 1], "label": (B,) int64 when labelled}


def skipped_rows(labels: Tensor) -> Tensor:
    """(N,) bool: the rows whose label says the file could not be decoded."""
    return torch.isin(labels, torch.tensor(list(SKIP_REASONS), dtype=labels.dtype))


def count_skipped(labels: Tensor) -> dict[str, int]:
    """{reason: number of rows}, for the reasons present in labels."""
    return {reason: n for code, reason in SKIP_REASONS.items() if (n := int((labels == code).sum()))}


def describe_skipped(skipped: dict[str, int], total: int, when: str = "") -> str:
    """'skipped 3 of 120 files<when>: 1 too large for ..., 2 unreadable (...)'."""
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in skipped.items())
    return f"skipped {sum(skipped.values()):,} of {total:,} files{when}: {reasons}"


def fits_on_device(nbytes: int, device: torch.device) -> bool:
    """Whether a data set of `nbytes` may live on the training device: on a GPU, when it takes at most half of the
    memory free there now (the rest is for the networks, activations and optimizer state); elsewhere always."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 2


def pinned_empty(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """Page-locked host memory (from PyTorch's caching host allocator, which keeps a block until the copies that
    read it are done): what a host-to-device copy can read without making the CPU wait."""
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def to_device(t: Tensor, device: torch.device) -> Tensor:
    """A per-step host-to-device copy that does not make the CPU wait for the GPU: from pinned memory, non-blocking."""
    if device.type != "cuda":
        return t.to(device)
    return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)


def gather_to(x: Tensor, idx: Tensor, device: torch.device) -> Tensor:
    """Rows `idx` of a host tensor on the device: gathered straight into pinned memory, copied without waiting."""
    if device.type != "cuda":
        return x[idx].to(device)
    rows = torch.index_select(x, 0, idx, out=pinned_empty((len(idx), *x.shape[1:]), x.dtype))
    return rows.to(device, non_blocking=True)


def epoch_order(n: int, seed: int, epoch: int) -> tuple[Tensor, Tensor]:
    """The permutation of epoch `epoch` and one flip coin per position, both from (seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g), torch.rand(n, generator=g) < 0.5


class Batches:
    """Iterator of batches with `state_dict()` / `load_state_dict()` for exact resume.

    Under torchrun, step k of an epoch uses positions [(k * world + rank) * B, ... + B) of the epoch's
    permutation: the ranks share one order and never see the same sample in an epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, hflip: bool, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.device, self.hflip = n, batch_size, seed, device, hflip
        self.rank, self.world = rank, world
        self.epoch, self.position = 0, 0  # position: steps already taken in this epoch
        self.batches_per_epoch = n // (batch_size * world)  # the ragged rest is dropped, as GANs usually do

    def span(self, position: int) -> slice:
        start = (position * self.world + self.rank) * self.batch_size
        return slice(start, start + self.batch_size)

    def __iter__(self):
        return self

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def _finish(self, real: Tensor, flips: Tensor) -> Tensor:
        real = to_model_range(real)
        if self.hflip:
            real = torch.where(flips.view(-1, 1, 1, 1), real.flip(-1), real)
        return real


class MemoryBatches(Batches):
    """Batches indexed straight out of a tensor on the training device: no workers, no copies per step. A set
    too large for the GPU's free memory (fits_on_device) stays in host memory instead, and each batch is
    gathered into pinned memory and copied asynchronously."""

    def __init__(self, x: Tensor, labels: Tensor | None, batch_size: int, seed: int, device: torch.device, hflip: bool,
                 rank: int = 0, world: int = 1):
        super().__init__(len(x), batch_size, seed, device, hflip, rank, world)
        self.resident = fits_on_device(x.nbytes + (labels.nbytes if labels is not None else 0), device)
        if not self.resident:
            log.info("the data (%.1f GB) stays in host memory: it would take over half of %s's free memory; "
                     "each batch is copied there asynchronously", x.nbytes / 2**30, device)
        home = device if self.resident else torch.device("cpu")
        self.x = x.to(home)
        self.labels = labels.to(home) if labels is not None else None
        self._order_epoch = -1

    def __next__(self) -> Batch:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order_epoch != self.epoch:
            order, flips = epoch_order(self.n, self.seed, self.epoch)
            home = self.x.device  # where the data is: the order indexes it there
            self._order, self._flips, self._order_epoch = order.to(home), flips.to(home), self.epoch
        span = self.span(self.position)
        self.position += 1
        idx = self._order[span]
        if not self.resident:  # host data: this batch's rows, its flips and labels copied without waiting
            batch = {"real": self._finish(gather_to(self.x, idx, self.device), to_device(self._flips[span], self.device))}
            if self.labels is not None:
                batch["label"] = gather_to(self.labels, idx, self.device)
            return batch
        batch = {"real": self._finish(self.x[idx], self._flips[span])}
        if self.labels is not None:
            batch["label"] = self.labels[idx]
        return batch


class _EpochSampler(Sampler[int]):
    """This rank's indices of one epoch's permutation, from step `start` on."""

    def __init__(self, batches: Batches):
        self.batches, self.epoch, self.start = batches, 0, 0

    def __iter__(self):
        b = self.batches
        order, _ = epoch_order(b.n, b.seed, self.epoch)
        return iter(torch.cat([order[b.span(k)] for k in range(self.start, b.batches_per_epoch)]).tolist())

    def __len__(self) -> int:
        return (self.batches.batches_per_epoch - self.start) * self.batches.batch_size


class LoaderBatches(Batches):
    """Batches decoded by DataLoader workers (pinned memory, persistent workers), moved to the device."""

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, device: torch.device, hflip: bool, workers: int,
                 rank: int = 0, world: int = 1):
        super().__init__(len(dataset), batch_size, seed, device, hflip, rank, world)
        self.sampler = _EpochSampler(self)
        self.loader = DataLoader(
            dataset, batch_size=batch_size, sampler=self.sampler, num_workers=workers, drop_last=True,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(seed),  # its own seed source: the global RNG stays untouched
            # under torchrun, workers forked from a process whose NCCL threads run can deadlock (DDP's notes)
            multiprocessing_context="forkserver" if world > 1 and workers > 0 else None,
        )
        self._iter, self._flips_epoch = None, -1
        self.unreadable = 0  # rows dropped so far, for any reason
        self.skipped: dict[str, int] = {}  # of this epoch, by reason

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._iter = None

    def __next__(self) -> Batch:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position, self._iter, self.skipped = self.epoch + 1, 0, None, {}
        if self._iter is None:
            self.sampler.epoch, self.sampler.start = self.epoch, self.position
            self._iter = iter(self.loader)
        images, labels = next(self._iter)
        readable = ~skipped_rows(labels)
        if not readable.all():  # a damaged or oversized file found mid-run: train on the rest of the batch
            self.unreadable += int((~readable).sum())
            for reason, n in count_skipped(labels).items():
                self.skipped[reason] = self.skipped.get(reason, 0) + n
            log.warning(describe_skipped(self.skipped, self.n, " in this epoch so far"))
            images, labels = images[readable], labels[readable]
        if self._flips_epoch != self.epoch:  # the epoch's flips go to the device once, without waiting
            self._flips, self._flips_epoch = to_device(epoch_order(self.n, self.seed, self.epoch)[1], self.device), self.epoch
        flips = self._flips[self.span(self.position)]
        if not readable.all():
            flips = flips[to_device(readable, self.device)]
        self.position += 1
        batch = {"real": self._finish(to_device(images, self.device), flips)}  # pinned by the DataLoader on GPUs
        if labels.numel() and labels.min() >= 0:
            batch["label"] = to_device(labels, self.device)
        return batch
