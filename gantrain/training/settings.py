"""The Trainer's settings (cfg.trainer): a dataclass whose fields say each key's type and range (gantrain.fields).

gantrain.config.schema registers it with Hydra as the trainer group's schema, so a value of the wrong type or a
key the Trainer does not have is refused when the command line is composed, and checks the ranges before anything
is built; __post_init__ checks the settings that go together.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from gantrain.device import is_device_name, resolve_device
from gantrain.errors import UserError
from gantrain.fields import at_least, auto_or_bool, existing, one_of, positive, rule
from gantrain.training.objective import SCORES

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainerConfig:
    """What the Trainer does with a system: the loop's length and cadence, devices and speed options."""

    max_steps: int = positive(1200)  # steps of the run (a step = n_critic D updates + one G update)
    max_seconds: Optional[float] = positive(None)  # also stop once training took this long (evaluations excluded)
    batch_size: int = positive(64)  # images per optimizer step (per process under torchrun), whatever grad_accum is
    grad_accum: int = positive(1)  # each optimizer step sums the gradients of this many micro-batches of the batch
    n_critic: int = positive(1)
    device: str = rule("auto", is_device_name, "auto, cpu, cuda, cuda:N or mps")
    amp: Any = rule(False, lambda v: is_amp(v), "false, bf16 or fp16")
    channels_last: Any = auto_or_bool("auto")  # auto: on for convolutional networks on the CPU and CUDA
    compile: bool = False
    cudnn_benchmark: bool = True
    fused: Any = auto_or_bool("auto")  # auto: the fused optimizer step on CUDA
    sync_bn: bool = False  # under torchrun on GPUs: BatchNorm statistics over all processes
    log_every: int = positive(50)
    sample_every: int = positive(200)
    checkpoint_every: int = positive(600)
    keep_checkpoints: int = positive(3)
    grid_size: int = positive(64)
    grad_clip: Optional[float] = at_least(None, 0)  # 0 or null: no clipping
    progress: bool = True
    resume: Optional[str] = existing(None, "path")  # a run directory or a checkpoint file
    init_from: Optional[str] = None  # a run or checkpoint whose G, D and EMA a new run starts from (checked below)
    decay_start: Optional[int] = at_least(None, 0)
    eval_every: Optional[int] = at_least(None, 0)  # 0 or null: no evaluations during training
    best_metric: str = one_of("fid", SCORES)
    patience: Optional[int] = positive(None)  # early stopping: evaluations without a new best before the run stops
    must_reach: Optional[float] = None  # early stopping: best_metric must reach this value ...
    must_reach_by: Optional[int] = positive(None)  # ... by this step, or the run stops
    nan_policy: str = one_of("stop", ("stop", "skip"))

    def __post_init__(self):
        """What single values cannot say: settings that go together, and whether the device is here."""
        # a resumed run only records where it started: it loads its own checkpoint, whether or not the source is there
        if self.init_from is not None and not self.resume and not Path(str(self.init_from)).expanduser().exists():
            raise UserError(f"trainer.init_from={self.init_from}: expected an existing path (a run directory or a "
                            f"checkpoint file), or null")
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


def is_amp(amp) -> bool:
    try:
        parse_amp(amp)
        return True
    except UserError:
        return False
