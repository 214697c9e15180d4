"""A run's clock: wall time (earlier sessions included), the part of it spent training (evaluations excluded), and
images per second, per logging interval and over the session."""

import contextlib
import time


class Clock:
    """Started when training begins; evaluations run inside `evaluating()` and count as neither training time nor
    images/s. `state_dict()` carries the times across a resume."""

    def __init__(self):
        self.run_before = self.train_before = 0.0  # seconds of earlier sessions of this run (before a resume)
        self.session_images = 0  # images trained in this session, all ranks together
        self.start()

    def start(self) -> None:
        self.began = self.interval_began = time.perf_counter()
        self.eval_seconds, self.interval_images = 0.0, 0

    def count(self, images: int) -> None:
        self.interval_images += images
        self.session_images += images

    def interval_speed(self) -> float:
        """Images/s since the last call (or the start), evaluations excluded; starts the next interval."""
        now = time.perf_counter()
        speed = self.interval_images / max(now - self.interval_began, 1e-9)
        self.interval_began, self.interval_images = now, 0
        return speed

    @contextlib.contextmanager
    def evaluating(self):
        """Time spent in here is evaluation: the interval's images/s and the training seconds leave it out."""
        started = time.perf_counter()
        try:
            yield
        finally:
            seconds = time.perf_counter() - started
            self.interval_began += seconds
            self.eval_seconds += seconds
            self.last_eval_seconds = seconds

    def eval_share(self) -> float:
        """Evaluation's share of this session's wall time so far."""
        return self.eval_seconds / max(time.perf_counter() - self.began, 1e-9)

    def run_seconds(self) -> float:
        """Wall time of this run so far, earlier sessions included."""
        return self.run_before + time.perf_counter() - self.began

    def training_seconds(self) -> float:
        """Wall time spent training so far (evaluations excluded), earlier sessions included."""
        return self.train_before + time.perf_counter() - self.began - self.eval_seconds

    def budget_spent(self, limit: float | None) -> str | None:
        """trainer.max_seconds: why the run ends (with its last grid, evaluation and checkpoint) once training took
        that long, or None."""
        if limit is not None and self.training_seconds() >= limit:
            return f"trainer.max_seconds={limit:g} reached"
        return None

    def session_speed(self) -> float:
        """Images/s of this session's training."""
        return self.session_images / max(self.training_seconds() - self.train_before, 1e-9)

    def state_dict(self) -> dict:
        return {"run_seconds": self.run_seconds(), "train_seconds": self.training_seconds()}

    def load_state_dict(self, state: dict) -> None:
        self.run_before = float(state.get("run_seconds", 0.0))
        self.train_before = float(state.get("train_seconds", self.run_before))
