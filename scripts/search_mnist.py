"""A real search, end to end: Optuna over the GAN search space on MNIST, then the best configuration against the
preset it started from, both retrained with 3 seeds at the same number of steps and scored on fresh samples.

Usage: python scripts/search_mnist.py [--data ../shared/data] [--trials 10] [--steps 300] [--seeds 0 1 2]
           [--samples 2000] [--out outputs/search_mnist] [--doc outputs/search_mnist/comparison.md]

Writes the search's gantrain-report (report.html, report.md) in OUT/search and the comparison to --doc.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

PRESET = "experiment=cs231n_dcgan"
# gan_search's space (configs/hydra/sweeper/gan_search.yaml) narrowed around the preset for a 300-step budget: its
# learning rate (1e-3) in the middle of the log ranges, one D step per G step (a second doubles D's cost per step),
# and an EMA short enough for the run, started at step 100 (0.999 averages over 1,000 steps, longer than the whole
# run; started at step 0, 0.995 still gave the untrained G a weight of 0.995^300 = 0.22 at the end: FID 487).
SPACE = ["optim.generator.lr=tag(log, interval(3e-4, 3e-3))", "optim.discriminator.lr=tag(log, interval(3e-4, 3e-3))",
         "optim.beta1=choice(0.0, 0.5)", "loss=choice(bce, lsgan, hinge)", "trainer.n_critic=1",
         "model.ema=choice(0, 0.99)", "model.ema_start=100"]


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--startup", type=int, default=5, help="random trials before TPE models the results (TPE's own "
                   "default, 10, leaves a 14-trial search only 4 guided trials)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=2000, help="generated images per evaluation")
    p.add_argument("--out", type=Path, default=Path("outputs/search_mnist"))
    p.add_argument("--doc", type=Path, default=Path("outputs/search_mnist/comparison.md"),
                   help="where the comparison goes (docs/studies/search_mnist.md is the study written up from it)")
    return p


def gantrain(*args: str) -> float:
    """Run gantrain with these arguments; returns the wall time."""
    started = time.perf_counter()
    subprocess.run(["gantrain", *args, "trainer.progress=false"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def common(args) -> list[str]:
    return [PRESET, f"data.root={args.data}", f"trainer.max_steps={args.steps}", f"metrics.num_samples={args.samples}",
            "metrics.metrics=[fid]"]


def best_trial(search_dir: Path) -> dict:
    summaries = [json.loads(p.read_text()) for p in search_dir.glob("trial-*/summary.json")]
    done = [s for s in summaries if s.get("best")]
    return min(done, key=lambda s: s["best"]["value"])


def searched_overrides(best: dict, fixed: list[str]) -> list[str]:
    """The best trial's overrides minus what every run shares (the searched values)."""
    keys = {o.split("=", 1)[0] for o in fixed} | {"trainer.eval_every", "trainer.progress"}
    return [o for o in best["overrides"] if o.split("=", 1)[0] not in keys]


def seeds_final_fid(args, name: str, overrides: list[str]) -> list[float]:
    """Retrain with each seed and score the final generator once, at the last step, on fresh samples."""
    sweep = args.out / name
    gantrain("-m", *common(args), *overrides, f"seed={','.join(map(str, args.seeds))}",
             f"trainer.eval_every={args.steps}", f"hydra.sweep.dir={sweep}")
    return [json.loads((job / "summary.json").read_text())["final_metrics"]["fid"]
            for job in sorted(sweep.iterdir()) if (job / "summary.json").is_file()]


def main() -> None:
    args = build_parser().parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    search_dir = args.out / "search"
    fixed = common(args)
    seconds = gantrain("-m", "hydra/sweeper=gan_search", *fixed, *SPACE, f"trainer.eval_every={args.steps // 3}",
                       f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
                       f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweep.dir={search_dir}")
    subprocess.run(["gantrain-report", str(search_dir)], check=True, stdout=subprocess.DEVNULL)
    best = best_trial(search_dir)
    found = searched_overrides(best, fixed)
    preset = seeds_final_fid(args, "preset", [])
    tuned = seeds_final_fid(args, "best", found)
    write_doc(args, seconds, found, best, preset, tuned, search_dir)
    print(args.doc.read_text())


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def write_doc(args, seconds, found, best, preset, tuned, search_dir) -> None:
    better = max(tuned) < min(preset)
    lines = [
        "# A search on MNIST",
        "",
        f"Produced by `python scripts/search_mnist.py --trials {args.trials} --steps {args.steps}` "
        f"({datetime.now():%Y-%m-%d %H:%M}, 2 CPU cores shared with other work).",
        "",
        f"1. `gantrain -m hydra/sweeper=gan_search {' '.join(common(args))} "
        f"{' '.join(repr(o) if ' ' in o else o for o in SPACE)} trainer.eval_every={args.steps // 3} "
        f"hydra.sweeper.sampler.n_startup_trials={args.startup} "
        f"hydra.sweeper.n_trials={args.trials}`: {args.trials} trials in {seconds / 60:.1f} min; "
        f"the report is `{search_dir}/report.html`.",
        f"2. The best trial ({best['best']['metric']} {best['best']['value']:.2f} at step {best['best']['step']}): "
        f"`{' '.join(found)}`.",
        f"3. The preset and the best configuration retrained with seeds {args.seeds} for {args.steps} steps each and "
        f"scored once at the end on {args.samples} fresh samples (classifier FID):",
        "",
        "| configuration | FID per seed | mean ± std |",
        "|---|---|---|",
        f"| `{PRESET}` (the preset) | {', '.join(f'{v:.2f}' for v in preset)} | {spread(preset)} |",
        f"| the search's best | {', '.join(f'{v:.2f}' for v in tuned)} | {spread(tuned)} |",
        "",
        ("Every seed of the searched configuration beats every seed of the preset." if better else
         "The searched configuration does not beat the preset on every seed: the seeds' spreads overlap."),
        "",
    ]
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
