"""Stop requests (SIGINT/SIGTERM) and a divergence watch for the training loop, both without slowing it."""

import contextlib
import logging
import signal
import threading

import torch
from torch import Tensor

log = logging.getLogger(__name__)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
