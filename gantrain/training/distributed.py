"""Multi-process training under torchrun: process group, one device per rank, DDP wrapping, rank-0 duties.

`torchrun --nproc_per_node=N -m gantrain ...` (and `--nnodes` with a rendezvous) starts N copies of
gantrain; PyTorch's DistributedDataParallel averages gradients across them. Each rank trains on its own
shard of every epoch; rank 0 alone logs, samples, evaluates and writes checkpoints.
"""

import contextlib
import gc
import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gantrain.errors import UserError

log = logging.getLogger(__name__)

_control_group = None  # a gloo group: small CPU messages (stop requests) without touching the GPU


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> None:
    """Join the process group torchrun described in the environment: gloo for CPU tensors, and on a GPU node
    NCCL for CUDA ones, so `trainer.device=cpu` (decided only after this, when the config is composed) trains
    with gloo there too instead of handing CPU tensors to NCCL."""
    global _control_group
    if dist.is_initialized() or not launched_by_torchrun():
        return
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    _control_group = dist.new_group(backend="gloo") if backend != "gloo" else dist.group.WORLD


def shutdown(finished: bool) -> None:
    """Leave the process group. After a finished run every rank first waits for the others (rank 0 may still be
    writing), and the DDP wrappers, which hold the group, are collected first: a gloo group freed only at
    interpreter exit can abort the process ("terminate called without an active exception")."""
    if not dist.is_initialized():
        return
    if finished:
        dist.barrier(group=_control_group)
    gc.collect()
    dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def device_for_rank(device: torch.device) -> torch.device:
    """Under torchrun each rank takes the GPU of its local rank."""
    if world_size() > 1 and device.type == "cuda":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def broadcast_from_main(value):
    """Rank 0's value on every rank (a run directory name, say)."""
    if world_size() == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_control_group)
    return box[0]


def largest(value: int) -> int:
    """The largest of every rank's value, on every rank (a stop request must stop all ranks at the same step)."""
    if world_size() == 1:
        return value
    t = torch.tensor([int(value)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control_group)
    return int(t.item())


def anyone(flag: bool) -> bool:
    """True on every rank when it is true on any."""
    return bool(largest(int(flag)))


NEVER = 2**62  # earliest()'s stand-in for "none"


def earliest(step: int | None) -> int | None:
    """The smallest of the ranks' values (None where a rank has none), on every rank: a divergence seen by one
    rank stops all of them at the same check, before rank 0 writes a grid or a checkpoint of it."""
    if world_size() == 1:
        return step
    t = torch.tensor([NEVER if step is None else step], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN, group=_control_group)
    value = int(t.item())
    return None if value == NEVER else value


def weights_agree(modules: list[nn.Module]) -> bool:
    """Whether every rank holds the same weights (a float64 checksum per rank, compared)."""
    if world_size() == 1:
        return True
    total = sum(p.detach().double().sum().item() + p.detach().double().abs().sum().item()
                for m in modules for p in m.parameters())
    sums = [None] * world_size()
    dist.all_gather_object(sums, total, group=_control_group)
    return all(s == sums[0] for s in sums)


def log_agreement(modules: list[nn.Module]) -> None:
    """Under torchrun, log whether the ranks ended with the same weights."""
    if world_size() > 1:
        log.info("weights %s on %d ranks", "identical" if weights_agree(modules) else "DIFFER", world_size())


class OneProcess:
    """What Replicas offers the Trainer, for a single process: no wrappers to take off, no all-reduce to hold."""

    def unwrapped(self):
        return contextlib.nullcontext()

    def no_sync(self, params: list[nn.Parameter]):
        return contextlib.nullcontext()


class Replicas:
    """The system's trained networks wrapped in DDP in place, and unwrapped again for checkpoints."""

    def __init__(self, system: nn.Module, networks: list[nn.Module], device: torch.device, sync_bn: bool):
        if sync_bn and device.type != "cuda":
            raise UserError("trainer.sync_bn=true needs CUDA devices (SyncBatchNorm has no CPU version): drop it")
        self.slots = []  # (parent, key, raw module, DDP wrapper)
        targets = {id(m) for m in networks}
        for parent in [system, *system.children()]:
            for key, child in list(parent.named_children()):
                if id(child) not in targets:
                    continue
                if sync_bn:
                    child = nn.SyncBatchNorm.convert_sync_batchnorm(child)
                ids = [device.index] if device.type == "cuda" else None
                wrapper = DistributedDataParallel(child, device_ids=ids)  # buffers (BN statistics) follow rank 0
                self.slots.append((parent, key, child, wrapper))
                setattr(parent, key, wrapper)

    @contextlib.contextmanager
    def unwrapped(self):
        """The raw networks in place (state_dict keys without DDP's `module.`), for saving and loading."""
        for parent, key, raw, _ in self.slots:
            setattr(parent, key, raw)
        try:
            yield
        finally:
            for parent, key, _, wrapper in self.slots:
                setattr(parent, key, wrapper)

    @contextlib.contextmanager
    def no_sync(self, params: list[nn.Parameter]):
        """No gradient all-reduce set up by forwards of the wrappers that own `params`: for D's forward in
        the G step (its weights are frozen) and G's forwards in D steps whose fakes are thrown away."""
        owned = {id(p) for p in params}
        with contextlib.ExitStack() as stack:
            for _, _, raw, wrapper in self.slots:
                if any(id(p) in owned for p in raw.parameters()):
                    stack.enter_context(wrapper.no_sync())
            yield
