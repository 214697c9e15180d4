"""The MNIST search on the worker engine: the same space and budget as the first MNIST search (docs/studies/search_mnist.md,
10 trials of 300 steps around experiment=cs231n_dcgan), run by 2 gantrain-search workers sharing one study, with
pruning (hydra/sweeper/pruner=median) and again without it (pruner=none) for the wall time pruning saves; then the
preset, the old search's best configuration and this search's best, each retrained with 3 seeds at the same number of
steps and scored on fresh samples.

Usage: python scripts/search_mnist.py [--data ../shared/data] [--trials 10] [--steps 300] [--workers 2]
           [--seeds 0 1 2] [--samples 2000] [--rescore-samples 5000] [--out outputs/search_mnist]
           [--doc outputs/search_mnist/comparison.md] [--no-unpruned] [--extra KEY=VALUE ...]

Writes each search's folder (OUT/pruned, OUT/unpruned: trial-NNNN runs, optuna.db, gantrain-report's report.html),
the retrained runs (OUT/retrain/NAME) and the comparison as Markdown (--doc), which it also prints.
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
# the first search's space (docs/studies/search_mnist.md): gan_search's narrowed around the preset for a 300-step budget
SPACE = ["optim.generator.lr=tag(log, interval(3e-4, 3e-3))", "optim.discriminator.lr=tag(log, interval(3e-4, 3e-3))",
         "optim.beta1=choice(0.0, 0.5)", "loss=choice(bce, lsgan, hinge)", "trainer.n_critic=1",
         "model.ema=choice(0, 0.99)", "model.ema_start=100"]
# the first search's best configuration over 3 seeds (its rank 2: FID 8.99 ± 1.84 against the preset's 19.09 ± 1.23)
OLD_BEST = ["loss=hinge", "optim.generator.lr=0.001455", "optim.discriminator.lr=0.000649", "optim.beta1=0.5",
            "model.ema=0", "model.ema_start=100", "trainer.n_critic=1"]


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--workers", type=int, default=2, help="gantrain-search processes sharing the study")
    p.add_argument("--startup", type=int, default=5, help="random trials before TPE models the results, and finished "
                   "trials before the median pruner judges (as in the first search)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=2000, help="generated images per evaluation")
    p.add_argument("--rescore-samples", type=int, default=5000, help="fresh samples for the final scores")
    p.add_argument("--out", type=Path, default=Path("outputs/search_mnist"))
    p.add_argument("--doc", type=Path, default=Path("outputs/search_mnist/comparison.md"),
                   help="where the comparison goes (docs/studies/search_mnist.md is the study written up from it)")
    p.add_argument("--no-unpruned", action="store_true", help="skip the search without pruning (half the time)")
    p.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (a tiny check: smaller models)")
    return p


def common(args) -> list[str]:
    return [PRESET, f"data.root={args.data}", f"trainer.max_steps={args.steps}", f"metrics.num_samples={args.samples}",
            "metrics.metrics=[fid]", "trainer.progress=false", *args.extra]


def search(args, name: str, pruner: str) -> dict:
    """`--workers` gantrain-search processes on one study until it holds --trials trials; its wall time and trials."""
    folder = args.out / name
    argv = ["gantrain-search", *common(args), *SPACE, f"trainer.eval_every={args.steps // 3}",
            f"hydra/sweeper/pruner={pruner}", f"hydra.sweeper.sampler.n_startup_trials={args.startup}",
            f"hydra.sweeper.n_trials={args.trials}", f"hydra.sweep.dir={folder}"]
    if pruner == "median":
        argv.append(f"hydra.sweeper.pruner.n_startup_trials={args.startup}")
    env = dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // args.workers)))
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    workers = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=open(folder / f"worker{i}.log", "w"))
               for i in range(args.workers)]
    if any(worker.wait() for worker in workers):
        sys.exit(f"a worker of {folder} failed: see {folder}/worker*.log")
    seconds = time.perf_counter() - started
    subprocess.run(["gantrain-report", str(folder)], check=True, stdout=subprocess.DEVNULL)
    trials = [json.loads(p.read_text()) for p in sorted(folder.glob("trial-*/summary.json"))]
    return {"folder": folder, "seconds": seconds, "trials": trials, "argv": argv}


def searched_overrides(best: dict) -> list[str]:
    """The best trial's values on the keys of the space (searched and fixed alike: the retrained runs need both)."""
    keys = {o.split("=", 1)[0] for o in SPACE}
    return [o for o in best["overrides"] if o.split("=", 1)[0] in keys]


def retrain(args, name: str, overrides: list[str]) -> list[float]:
    """Each seed trained for --steps, its final generator scored on fresh samples (sampling seed 1)."""
    sweep = args.out / "retrain" / name
    subprocess.run(["gantrain", "-m", *common(args), *overrides, f"seed={','.join(map(str, args.seeds))}",
                    f"trainer.eval_every={args.steps}", f"hydra.sweep.dir={sweep}"], check=True, stdout=subprocess.DEVNULL)
    scores = []
    for job in sorted(p for p in sweep.iterdir() if (p / "summary.json").is_file()):
        subprocess.run(["gantrain-eval", f"run={job}", "metrics=[fid]", f"num_samples={args.rescore_samples}", "seed=1",
                        f"out={job / 'rescored.json'}"], check=True, stdout=subprocess.DEVNULL)
        scores.append(json.loads((job / "rescored.json").read_text())["fid"])
    return scores


def spread(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    pruned = search(args, "pruned", "median")
    unpruned = None if args.no_unpruned else search(args, "unpruned", "none")
    done = [t for t in pruned["trials"] if t.get("best")]
    best = min(done, key=lambda t: t["best"]["value"])
    found = searched_overrides(best)
    scores = {name: retrain(args, name, overrides)
              for name, overrides in (("preset", []), ("old_best", OLD_BEST), ("new_best", found))}
    write_doc(args, pruned, unpruned, best, found, scores)
    print(args.doc.read_text())


def write_doc(args, pruned, unpruned, best, found, scores) -> None:
    statuses = [t["status"] for t in pruned["trials"]]
    saved = sum(t["max_steps"] - t["steps"] for t in pruned["trials"] if t["status"] == "pruned")
    rows = [("`" + PRESET + "` (the preset)", scores["preset"]),
            ("the first search's best: `" + " ".join(OLD_BEST[:3]) + "`", scores["old_best"]),
            ("this search's best: `" + " ".join(found) + "`", scores["new_best"])]
    lines = [
        "# The MNIST search on search workers",
        "",
        f"Produced by `python {' '.join(sys.argv)}` ({datetime.now():%Y-%m-%d %H:%M}, {os.cpu_count()} cores).",
        "",
        f"1. {args.workers} workers, {args.trials} trials of {args.steps} steps with the median pruner: "
        f"**{pruned['seconds'] / 60:.1f} min**; {statuses.count('pruned')} trials pruned ({saved} steps not trained), "
        f"{statuses.count('finished')} finished. Each worker ran `{' '.join(pruned['argv'])}`; the report is "
        f"`{pruned['folder']}/report.html`.",
        (f"2. The same search without pruning (`hydra/sweeper/pruner=none`): **{unpruned['seconds'] / 60:.1f} min**."
         if unpruned else "2. The search without pruning was skipped (--no-unpruned)."),
        f"3. The best trial ({best['best']['metric']} {best['best']['value']:.4g} at step {best['best']['step']}): "
        f"`{' '.join(found)}`.",
        f"4. Each configuration retrained with seeds {args.seeds} for {args.steps} steps and its final generator scored "
        f"on {args.rescore_samples} fresh samples (`gantrain-eval ... seed=1`, classifier FID):",
        "",
        "| configuration | FID per seed | mean ± std |",
        "|---|---|---|",
        *[f"| {name} | {', '.join(f'{v:.2f}' for v in values)} | {spread(values)} |" for name, values in rows],
        "",
    ]
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
