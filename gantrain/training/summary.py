"""summary.json: how a run went, in one machine-readable file in its run directory.

Written by the Trainer when a run ends in any way (finished, stopped_early, pruned, interrupted, diverged,
failed) and by the CLI when a run fails before training starts; read by sweeps (a finished job is not
trained again) and by gantrain-report. Keys: status, reason, steps, max_steps, wall_seconds,
train_seconds (wall time less evaluations), images_per_sec, best_metric, best ({metric, value, step} or null),
final_metrics, evaluations (every evaluation's step, training seconds so far and values), overrides, choices,
gantrain_version, init_from (where a run started by trainer.init_from came from: run, checkpoint, step, gantrain_version,
model, data, networks; null for a run started from scratch).
"""

import json
import os
from pathlib import Path

FILE = "summary.json"
STATUSES = ("finished", "stopped_early", "pruned", "interrupted", "diverged", "failed")
# a sweep returns these runs' recorded results instead of training again: a pruned trial's verdict stands (training
# it on would spend what pruning saved, and its trial is already told)
DONE = ("finished", "stopped_early", "pruned")


def write_summary(run_dir: str | Path, summary: dict) -> Path:
    """Replace run_dir/summary.json whole (a reader never sees half of it)."""
    path = Path(run_dir) / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return path


def read_summary(run_dir: str | Path) -> dict | None:
    """The run's summary, or None when it has none (or an unreadable one)."""
    try:
        return json.loads((Path(run_dir) / FILE).read_text())
    except (OSError, ValueError):
        return None


def run_summary(status: str, reason: str | None, step: int, max_steps: int, clock, objective, meta: dict) -> dict:
    """What summary.json says about a run, from the Trainer's clock, objective and meta (config, choices, version)."""
    return {
        "status": status, "reason": reason, "steps": step, "max_steps": max_steps,
        "wall_seconds": round(clock.run_seconds(), 3), "train_seconds": round(clock.training_seconds(), 3),
        "images_per_sec": round(clock.session_speed(), 1),
        "best_metric": objective.metric, "best": objective.best or None, "final_metrics": objective.final_metrics(),
        "evaluations": objective.evaluations, "overrides": list(meta.get("overrides", [])),
        "choices": meta.get("choices", {}), "gantrain_version": meta.get("gantrain_version"),
        "init_from": meta.get("init_from"),
    }
