"""A run's objective: which way each metric improves, and the early-stopping rules that end a run going nowhere.

A training run returns the best value of `trainer.best_metric` over its evaluations, so Hydra's sweepers
can optimise it; the rules below stop a run early. Under a search, each evaluation is also reported to the search
(`report(step, value) -> stop?`, built by gantrain.search), whose pruner may end the run the same clean way.
"""

import math
from collections.abc import Callable

METRICS = ("fid", "kid", "is", "pr", "accuracy", "tstr")  # what metrics.metrics may ask for
SCORES = ("fid", "kid", "is", "precision", "recall", "accuracy", "tstr")  # what evaluations report (pr gives two)
HIGHER_IS_BETTER = frozenset({"is", "precision", "recall", "accuracy", "tstr"})  # the rest: lower is better


def direction(metric: str) -> str:
    """Optuna's name for the way `metric` improves."""
    return "maximize" if metric in HIGHER_IS_BETTER else "minimize"


def better(metric: str, value: float, than: float | None) -> bool:
    """Whether `value` improves on `than` (None: nothing yet). NaN never improves."""
    if value is None or math.isnan(value):
        return False
    if than is None:
        return True
    return value > than if metric in HIGHER_IS_BETTER else value < than


class EarlyStopping:
    """trainer.patience: stop after that many evaluations without a new best; trainer.must_reach and
    trainer.must_reach_by: stop unless the best value has reached `must_reach` by step `must_reach_by`."""

    def __init__(self, metric: str, patience: int | None = None, must_reach: float | None = None,
                 must_reach_by: int | None = None):
        self.metric, self.patience, self.must_reach, self.must_reach_by = metric, patience, must_reach, must_reach_by
        self.since_best = 0

    def reason(self, step: int, value: float | None, best: float | None, improved: bool) -> str | None:
        """After an evaluation at `step`: why the run should stop now, or None to go on."""
        self.since_best = 0 if improved else self.since_best + 1
        if self.patience is not None and self.since_best >= self.patience:
            return (f"no better {self.metric} in {self.patience} evaluations (best {best:.4g}) "
                    f"(trainer.patience={self.patience})")
        if self.must_reach_by is not None and step >= self.must_reach_by and not (
                best is not None and (best == self.must_reach or better(self.metric, best, self.must_reach))):
            shown = "nothing" if best is None else f"{best:.4g}"
            return (f"best {self.metric} {shown} has not reached {self.must_reach:g} by step {self.must_reach_by} "
                    f"(trainer.must_reach, trainer.must_reach_by)")
        return None

    def state_dict(self) -> dict:
        return {"since_best": self.since_best}

    def load_state_dict(self, state: dict) -> None:
        self.since_best = int(state.get("since_best", 0))


class Objective:
    """What a run is judged by: every evaluation so far, the best value of `metric` (checkpoints/best.pt follows
    it) and the early-stopping rules. Kept in the checkpoint, so a resumed run judges the same way."""

    def __init__(self, metric: str, patience: int | None = None, must_reach: float | None = None,
                 must_reach_by: int | None = None, report: Callable[[int, float], bool] | None = None):
        self.metric = metric
        self.best: dict = {}  # {"metric", "value", "step"} of checkpoints/best.pt
        self.evaluations: list[dict] = []  # {"step": N, "seconds": training s, metric: value, ...}
        self.early = EarlyStopping(metric, patience, must_reach, must_reach_by)
        self.report = report
        self.pruned_at: int | None = None  # the step at which the search's pruner ended the run

    def record(self, step: int, seconds: float, values: dict) -> bool:
        """Add an evaluation; whether it is a new best."""
        self.evaluations.append({"step": step, "seconds": round(seconds, 2), **{k: float(v) for k, v in values.items()}})
        value = values.get(self.metric)
        if self.report is not None and value is not None and self.report(step, float(value)):
            self.pruned_at = step
        if value is None or not better(self.metric, float(value), self.best.get("value")):
            return False
        self.best = {"metric": self.metric, "value": float(value), "step": step}
        return True

    def stop_reason(self, improved: bool) -> str | None:
        """After record(): why the run should stop now (an early-stopping rule), or None to go on."""
        last = self.evaluations[-1] if self.evaluations else {}
        if self.metric not in last:
            return None
        if self.pruned_at is not None:
            return f"pruned by the search at step {self.pruned_at} ({self.metric} {last[self.metric]:.4g})"
        return self.early.reason(last["step"], last[self.metric], self.best.get("value"), improved)

    @property
    def value(self) -> float | None:
        """The run's objective: the best value of the metric (None without evaluations of it)."""
        return self.best.get("value")

    def final_metrics(self) -> dict:
        return {k: v for k, v in self.evaluations[-1].items() if k not in ("step", "seconds")} if self.evaluations else {}

    def state_dict(self) -> dict:
        return {"best": self.best, "evaluations": self.evaluations, "early_stopping": self.early.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.best = state.get("best", {})
        self.evaluations = list(state.get("evaluations", []))
        self.early.load_state_dict(state.get("early_stopping", {}))
