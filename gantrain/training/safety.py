"""Why a run stops early, stop requests (SIGINT/SIGTERM) and a divergence watch for the training loop, neither
slowing it."""

import contextlib
import logging
import signal
import threading
from enum import IntEnum

import torch
from torch import Tensor

from gantrain.errors import TrainingDiverged
from gantrain.training import distributed

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stop(IntEnum):
    """Why the loop ends before max_steps; every rank takes the largest of the ranks' answers."""

    NO = 0
    EARLY = 1  # an early-stopping rule or trainer.max_seconds, decided on rank 0
    SIGNAL = 2  # SIGINT/SIGTERM, here or on another rank


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the loop finishes its step, saves and exits."""

    signum: int | None = None


@contextlib.contextmanager
def stop_on_signals():
    """While training, turn SIGINT/SIGTERM into a StopRequest; a second signal stops at once."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():  # signals only reach the main thread
        yield request
        return

    def handler(signum, frame):
        if request.signum is not None:
            raise KeyboardInterrupt
        request.signum = signum
        log.warning("%s received: finishing this step, then saving a checkpoint (send it again to stop at once)",
                    signal.Signals(signum).name)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield request
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class DivergenceWatch:
    """Remembers, on the device, the first step whose loss was not finite; read only when needed."""

    def __init__(self, device: torch.device, step: int = 0):
        self.step = torch.tensor(step, device=device)
        self.first_bad = torch.tensor(-1, device=device)

    def observe(self, loss: Tensor) -> None:
        bad = ~torch.isfinite(loss.detach())
        self.first_bad = torch.where(bad & (self.first_bad < 0), self.step + 1, self.first_bad)

    def advance(self, steps: int = 1) -> None:
        self.step += steps

    def first_bad_step(self) -> int | None:
        """The step that went wrong, or None (this reads the device: call it at intervals)."""
        value = int(self.first_bad)
        return value if value >= 0 else None

    def check(self, last_saved) -> None:
        """Stop the run (keeping the last good checkpoint) once a loss has been NaN or infinite on any rank."""
        bad = distributed.earliest(self.first_bad_step())  # every rank stops at the same check
        if bad is None:
            return
        kept = f"the last good checkpoint is {last_saved}" if last_saved else "no checkpoint was written"
        raise TrainingDiverged(
            f"the loss became NaN or infinite at step {bad}: lower the learning rates (optim.lr), use trainer.amp=bf16 "
            f"or false instead of fp16, or set trainer.grad_clip; {kept} (trainer.nan_policy=skip drops such updates)"
        )
