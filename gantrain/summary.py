"""summary.json: how a run went, in one machine-readable file in its run directory.

Written by the Trainer when a run ends in any way (finished, stopped_early, interrupted, diverged,
failed) and by the CLI when a run fails before training starts; read by sweeps (a finished job is not
trained again) and by gantrain-report. Keys: status, reason, steps, max_steps, wall_seconds,
train_seconds (wall time less evaluations), images_per_sec, best_metric, best ({metric, value, step} or null),
final_metrics, evaluations (every evaluation's step, training seconds so far and values), overrides, choices,
gantrain_version.
"""

import json
import os
from pathlib import Path

FILE = "summary.json"
STATUSES = ("finished", "stopped_early", "interrupted", "diverged", "failed")
DONE = ("finished", "stopped_early")  # a sweep returns these runs' recorded results instead of training again


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
