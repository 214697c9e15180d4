"""The Trainer's settings (cfg.trainer): a plain dataclass with its range checks.

gantrain.config.schema registers it with Hydra as the trainer group's schema, so a value of the wrong type or a
key the Trainer does not have is refused when the command line is composed; the ranges OmegaConf cannot express
are checked here, when the settings object is made.
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch

from gantrain.device import resolve_device
from gantrain.errors import UserError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainerConfig:
    """What the Trainer does with a system: the loop's length and cadence, devices and speed options."""

    max_steps: int = 1200  # steps of the run (a step = n_critic D updates + one G update)
    max_seconds: Optional[float] = None  # also stop once this much wall time was spent training (evaluations excluded)
    batch_size: int = 64  # images per optimizer step (per process under torchrun), whatever grad_accum is
    grad_accum: int = 1  # each optimizer step sums the gradients of this many micro-batches of batch_size / grad_accum
    n_critic: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    amp: Any = False  # false | bf16 | fp16
    channels_last: Any = "auto"  # auto (on for convolutional networks on the CPU and CUDA) | true | false
    compile: bool = False
    cudnn_benchmark: bool = True
    fused: Any = "auto"  # auto | true | false
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over all processes
    log_every: int = 50
    sample_every: int = 200
    checkpoint_every: int = 600
    keep_checkpoints: int = 3
    grid_size: int = 64
    grad_clip: Optional[float] = None
    progress: bool = True
    resume: Optional[str] = None
    init_from: Optional[str] = None  # a run directory or checkpoint whose networks (G, D, EMA) a new run starts from
    decay_start: Optional[int] = None
    eval_every: Optional[int] = None
    best_metric: str = "fid"
    patience: Optional[int] = None  # early stopping: evaluations without a new best before the run stops
    must_reach: Optional[float] = None  # early stopping: best_metric must reach this value ...
    must_reach_by: Optional[int] = None  # ... by this step, or the run stops
    nan_policy: str = "stop"  # stop | skip

    def __post_init__(self):
        for key in ("max_steps", "batch_size", "grad_accum", "n_critic", "log_every", "sample_every", "checkpoint_every",
                    "grid_size", "keep_checkpoints"):
            if getattr(self, key) <= 0:
                raise UserError(f"trainer.{key}={getattr(self, key)}: must be a positive integer")
        for key in ("patience", "must_reach_by"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:
                raise UserError(f"trainer.{key}={getattr(self, key)}: must be a positive integer or null")
        if self.batch_size % self.grad_accum:
            divisors = [k for k in range(2, self.batch_size + 1) if self.batch_size % k == 0][:4]
            raise UserError(f"trainer.grad_accum={self.grad_accum}: trainer.batch_size={self.batch_size} does not split "
                            f"into {self.grad_accum} equal micro-batches; use a divisor of it "
                            f"({', '.join(map(str, divisors)) or 'none above 1'}), or change trainer.batch_size")
        if (self.must_reach is None) != (self.must_reach_by is None):
            raise UserError(f"trainer.must_reach={self.must_reach}, trainer.must_reach_by={self.must_reach_by}: "
                            f"set both (the value best_metric must reach, and the step by which) or neither")
        if (self.patience or self.must_reach_by) and not self.eval_every:
            raise UserError("early stopping (trainer.patience, trainer.must_reach) judges evaluations: set "
                            "trainer.eval_every=N")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise UserError(f"trainer.max_seconds={self.max_seconds:g}: must be a positive number of seconds, or null")
        for key in ("eval_every", "decay_start", "grad_clip"):
            if getattr(self, key) is not None and getattr(self, key) < 0:
                raise UserError(f"trainer.{key}={getattr(self, key)}: must be a non-negative number or null")
        if self.nan_policy not in ("stop", "skip"):
            raise UserError(f"trainer.nan_policy={self.nan_policy}: use stop or skip")
        if str(self.channels_last).lower() not in ("auto", "true", "false"):
            raise UserError(f"trainer.channels_last={self.channels_last}: use auto, true or false")
        parse_amp(self.amp)
        resolve_device(self.device)

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return parse_amp(self.amp)


def parse_amp(amp) -> torch.dtype | None:
    if amp in (False, None) or str(amp).lower() in ("false", "none", "no", "off", "fp32", "0"):
        return None
    if str(amp).lower() in AMP_DTYPES:
        return AMP_DTYPES[str(amp).lower()]
    raise UserError(f"trainer.amp={amp}: use false, bf16 or fp16")
