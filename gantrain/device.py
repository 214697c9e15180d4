"""Turn a device name from the config into a torch.device; the only place that probes hardware."""

import platform

import torch

from gantrain.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` picks CUDA, then Apple MPS, then CPU; explicit names are checked, not trusted."""
    name = str(name).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"trainer.device={name} is not a device name: use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"trainer.device={name} but CUDA is not available here: use trainer.device=cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(
                f"trainer.device={name} but only {torch.cuda.device_count()} CUDA device(s) exist: "
                f"use cuda:0..cuda:{torch.cuda.device_count() - 1}"
            )
    elif device.type == "mps" and not _mps_available():
        raise UserError(f"trainer.device={name} but MPS is not available here: use trainer.device=cpu or auto")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"trainer.device={name} is not supported: use auto, cpu, cuda, cuda:N or mps")
    return device


def is_device_name(name) -> bool:
    """Whether `name` names a device gantrain can train on (auto, cpu, cuda, cuda:N, mps), present or not."""
    name = str(name).strip().lower()
    if name == "auto":
        return True
    try:
        return torch.device(name).type in ("cpu", "cuda", "mps")
    except RuntimeError:
        return False


def device_for_sweep_job(name: str, job_num: int) -> str:
    """trainer.device for job `job_num` of a sweep: on a machine with several GPUs, `auto` or `cuda` becomes
    cuda:(job_num mod GPU count), so jobs running side by side (hydra/launcher=parallel with n_jobs up to
    the GPU count) each get a GPU of their own; anything else is kept as it is."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if str(name).strip().lower() not in ("auto", "cuda") or count < 2:
        return name
    return f"cuda:{job_num % count}"


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def emulates_bf16(device: torch.device) -> bool:
    """Whether bf16 autocast on `device` runs without bf16 instructions: an x86 CPU with neither AVX512-BF16 nor AMX,
    where it is slower than fp32 (2.3x measured in docs/studies/bench.md). False where torch cannot tell."""
    if device.type != "cpu" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [probe for probe in probes if probe is not None]
    return bool(probes) and not any(probe() for probe in probes)
