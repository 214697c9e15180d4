"""What `gantrain -m` adds to single runs: a job run again continues (finished jobs answer from their summary,
interrupted ones resume, failed ones start over), a failing job is recorded, and the sweep ends with a summary."""

import logging
import sys
from datetime import datetime
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from gantrain.errors import first_line
from gantrain.search.report import find_runs, rows, text_table
from gantrain.training.summary import DONE, read_summary

log = logging.getLogger("gantrain")


def mark_failed(err: Exception, known: bool) -> None:
    """A sweep job's failure: logged (with the trace when unexpected) and written to its FAILED file."""
    if known:
        log.error("%s", err)
    else:
        log.exception("job failed")
    (Path(HydraConfig.get().runtime.output_dir) / "FAILED").write_text(f"{type(err).__name__}: {first_line(err)}\n")


class SweepSummary(Callback):
    """At the end of `gantrain -m`: which jobs failed and why; exit status 1 when any did."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name))
        failed = [p for p in jobs if (p / "FAILED").is_file()]
        print(f"sweep {sweep}: {len(jobs) - len(failed)} of {len(jobs)} jobs succeeded", file=sys.stderr)
        print_top_runs(sweep)
        for job in failed:
            overrides = " ".join(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
            print(f"  job {job.name} ({overrides}) failed: {(job / 'FAILED').read_text().strip()}", file=sys.stderr)
        if failed:
            sys.exit(1)


def print_top_runs(sweep: Path, top: int = 5) -> None:
    """The best runs of the sweep (by their summaries), and where the full report comes from."""
    runs = find_runs(sweep)
    if any(run.best is not None for run in runs):
        print(f"top runs:\n{text_table(rows(runs), limit=top)}\n(gantrain-report {sweep}: the whole ranking, "
              f"report.html)", file=sys.stderr)


def continue_sweep_job(cfg: DictConfig, job_dir: Path) -> dict | None:
    """A sweep job whose directory already holds a run: its summary when it finished (nothing to train);
    otherwise None, after pointing trainer.resume at its checkpoint (interrupted) or moving a failed
    attempt's files aside (it runs again from the start; nothing is deleted)."""
    recorded = read_summary(job_dir)
    if recorded and recorded.get("status") in DONE:
        best = recorded.get("best") or {}
        log.info("sweep job %s already %s (best %s %s): not training it again", job_dir, recorded["status"],
                 best.get("metric", cfg.trainer.best_metric), best.get("value"))
        return recorded
    failed = (job_dir / "FAILED").is_file() or (recorded or {}).get("status") in ("failed", "diverged")
    if failed:
        attempt = job_dir / f"failed-attempt-{datetime.now():%Y%m%d-%H%M%S}"
        attempt.mkdir()
        for item in job_dir.iterdir():
            if item != attempt and item.name != ".hydra" and not item.name.startswith("failed-attempt-"):
                item.rename(attempt / item.name)
        log.info("sweep job %s failed before: its files moved to %s; training it again", job_dir, attempt.name)
    elif (job_dir / "checkpoints" / "last.pt").is_file() and not cfg.trainer.resume:
        log.info("sweep job %s was interrupted: resuming it from its last checkpoint", job_dir)
        cfg.trainer.resume = str(job_dir)
    return None
