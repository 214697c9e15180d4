"""Endless, shuffled, resumable streams of batches; their state is (epoch, position) and nothing else.

Each epoch's order (and its random flips) comes from a generator seeded by (seed, epoch), so a run
resumed from a checkpoint sees exactly the batches the uninterrupted run would have seen.
"""

import logging

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from gantrain.pixels import to_model_range

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
    """Batches indexed straight out of a tensor on the training device: no workers, no copies per step."""

    def __init__(self, x: Tensor, labels: Tensor | None, batch_size: int, seed: int, device: torch.device, hflip: bool,
                 rank: int = 0, world: int = 1):
        super().__init__(len(x), batch_size, seed, device, hflip, rank, world)
        self.x = x.to(device)
        self.labels = labels.to(device) if labels is not None else None
        self._order_epoch = -1

    def __next__(self) -> Batch:
        if self.position >= self.batches_per_epoch:
            self.epoch, self.position = self.epoch + 1, 0
        if self._order_epoch != self.epoch:
            order, flips = epoch_order(self.n, self.seed, self.epoch)
            self._order, self._flips, self._order_epoch = order.to(self.device), flips.to(self.device), self.epoch
        span = self.span(self.position)
        self.position += 1
        idx = self._order[span]
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
        if self._flips_epoch != self.epoch:
            self._flips, self._flips_epoch = epoch_order(self.n, self.seed, self.epoch)[1], self.epoch
        flips = self._flips[self.span(self.position)][readable]
        self.position += 1
        non_blocking = self.device.type == "cuda"
        batch = {"real": self._finish(images.to(self.device, non_blocking=non_blocking), flips.to(self.device))}
        if labels.numel() and labels.min() >= 0:
            batch["label"] = labels.to(self.device, non_blocking=non_blocking)
        return batch
