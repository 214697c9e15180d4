"""The Trainer's speed options: the memory format of convolutional networks, fused optimizers, and D's weights
left out of autograd during the G step."""

import contextlib
import inspect
from collections.abc import Callable

import torch
from torch import nn

CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]):
    """Parameters that need no gradient for this forward pass (D's weights during the G step)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_optimizer(factory: Callable, params: list[nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """factory(params), with the fused single-kernel update where asked for and the optimizer has one."""
    func = getattr(factory, "func", factory)
    if fused and "fused" in inspect.signature(func).parameters:
        return factory(params, fused=True)
    return factory(params)


def use_fused(fused, device: torch.device) -> bool:
    """trainer.fused: `auto` is on for CUDA, where the single-kernel update is faster."""
    return device.type == "cuda" if str(fused).lower() == "auto" else bool(fused)


def memory_format(channels_last, device: torch.device, networks: list[nn.Module]) -> torch.memory_format:
    """trainer.channels_last: `auto` is NHWC for networks with 2-D convolutions on the CPU and CUDA, where oneDNN
    and cuDNN run them faster in that layout (scripts/bench_channels_last.py measures it); plain otherwise."""
    if str(channels_last).lower() == "auto":
        convolutional = any(isinstance(m, CONVOLUTIONS) for network in networks for m in network.modules())
        channels_last = convolutional and device.type in ("cpu", "cuda")
    elif isinstance(channels_last, str):
        channels_last = channels_last.lower() == "true"
    return torch.channels_last if channels_last else torch.contiguous_format


def to_memory_format(batch: dict[str, torch.Tensor], fmt: torch.memory_format) -> dict[str, torch.Tensor]:
    """A batch's images (4-D tensors) in the networks' memory format."""
    if fmt is torch.contiguous_format:
        return batch
    return {k: v.contiguous(memory_format=fmt) if v.ndim == 4 else v for k, v in batch.items()}


def prepare_networks(system, settings, device: torch.device) -> torch.memory_format:
    """The system on the device, its networks in the memory format the settings ask for (returned) and compiled
    when asked; cuDNN picks the fastest kernels for the fixed shapes of training."""
    networks = system.trained_networks()
    fmt = memory_format(settings.channels_last, device, networks)
    system.to(device, memory_format=fmt)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = settings.cudnn_benchmark
    for network in networks if settings.compile else []:
        network.compile()  # in place: state_dict keys (and so checkpoints) stay as they are
    return fmt
