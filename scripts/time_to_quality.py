"""Quality against wall time: each recipe of a study trained for a time budget, scored as it goes, plotted.

Usage: python scripts/time_to_quality.py STUDY [--seeds 0 1 2] [--budget SECONDS] [--data ../shared/data]
                                         [--recipes NAME ...] [--out outputs/time_to_quality] [--plot PNG]
Studies: digits (the default run before and after), mnist (full MNIST under --data; mnist_seeds: every MNIST
seed preset beside fast_mnist; mnist_precision: bf16 against fp32), augment_digits and augment_cifar10-5k
(ADA, DiffAugment or neither; the CIFAR one with the CIFAR seed presets; --data/cifar10-5k), stylegan2_digits
and stylegan2_cifar10-5k (the StyleGAN2 CPU preset against fast_digits and fast_cifar10, at the budgets above).
Beside the plot, <plot>_grids.png shows each recipe's final grid (its first seed) and real images.
Needs matplotlib for the plot: pip install -e ".[plots]".

Each recipe runs as `gantrain <recipe> trainer.max_seconds=<budget less --startup> trainer.eval_every=<its cadence>
metrics.metrics=[fid] metrics.num_samples=10000 seed=S`; with --parallel N, N runs at a time, each with
cores/N threads (so on 2 cores, --parallel 2 gives each run one core: compare recipes within one study).
The x axis is seconds since the command started: start-up (imports, data, building the networks) plus
training, evaluations excluded (gantrain records each evaluation's training seconds in summary.json and
does not count evaluation time against trainer.max_seconds). The y axis is classifier FID (gantrain's
extractor, 10,000 samples), mean over seeds with the min-max band. Runs already finished under --out are
read again (their curve.json), not retrained: delete a run's folder to redo it. Before timing, each recipe
trains one step with a small evaluation, so the caches (decoded images, evaluation classifier) are built
untimed. The figures go to <out>/<study>.json.
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SCORING = ["metrics.metrics=[fid]", "metrics.num_samples=10000", "trainer.progress=false"]
MNIST, CIFAR = ["data.root={data}"], ["data=folder", "data.root={data}/cifar10-5k", "data.image_size=32", "data.channels=3"]
# study -> recipe -> (overrides, evaluation cadence in steps)
STUDIES = {
    "digits": {"budget": 180, "recipes": {  # the default run of 0.2.0 and of 0.3.0, each its own length
        "default before (bce, 2e-4, width 64, 1,200 steps)": (
            ["loss=bce", "optim.lr=2e-4", "optim.generator.lr=2e-4", "model.ema=null", "model.ada=null",
             "loss.r1=0", "model.generator.width=64", "model.discriminator.width=64", "trainer.max_steps=1200"], 200),
        "default now (fast_digits)": ([], 500),
    }},
    "mnist": {"budget": 120, "recipes": {
        "cs231n_dcgan bf16 (the seed preset with bf16 and channels_last)": (
            ["experiment=cs231n_dcgan", *MNIST, "trainer.max_steps=100000", "trainer.amp=bf16"], 250),
        "fast_mnist": (["experiment=fast_mnist", *MNIST], 250),  # its own 1,000 steps (or the budget, if sooner)
    }},
    # every seed preset that trains on MNIST, as published (fp32), beside fast_mnist: run with --parallel 2
    "mnist_seeds": {"budget": 120, "recipes": {
        "cs231n_vanilla": (["experiment=cs231n_vanilla", *MNIST, "trainer.max_steps=100000"], 500),
        "cs231n_lsgan": (["experiment=cs231n_lsgan", *MNIST, "trainer.max_steps=100000"], 500),
        "cs231n_dcgan": (["experiment=cs231n_dcgan", *MNIST, "trainer.max_steps=100000"], 150),
        "dcgan_mnist (at 32x32: its own classifier)": (["experiment=dcgan_mnist", *MNIST, "trainer.max_steps=100000"], 100),
        "wgan_mnist (at 32x32: its own classifier)": (["experiment=wgan_mnist", *MNIST, "trainer.max_steps=100000"], 50),
        "cgan_mnist": (["experiment=cgan_mnist", *MNIST, "trainer.max_steps=100000"], 250),
        "fast_mnist": (["experiment=fast_mnist", *MNIST], 150),
    }},
    "mnist_precision": {"budget": 3600, "recipes": {  # bf16 against fp32 at equal steps (bf16's speed: bench.py)
        "fast_mnist bf16": (["experiment=fast_mnist", *MNIST], 250),
        "fast_mnist fp32": (["experiment=fast_mnist", *MNIST, "trainer.amp=false"], 250),
    }},
    # ADA against DiffAugment against neither, at equal wall time, on small sets (docs/studies/small_data.md)
    "augment_digits": {"budget": 120, "recipes": {
        "neither": (["experiment=fast_digits", "model.diffaugment=null", "model.ada=null"], 200),
        "DiffAugment": (["experiment=fast_digits", "model.diffaugment=[color,translation,cutout]", "model.ada=null"], 200),
        "ADA": (["experiment=fast_digits", "model.diffaugment=null", "model.ada=0.6"], 200),
    }},
    # ... and fast_cifar10 (ADA) beside the CIFAR seed presets as published
    "augment_cifar10-5k": {"budget": 120, "recipes": {
        "hinge_sngan_cifar10": (["experiment=hinge_sngan_cifar10", *CIFAR], 50),  # ResNets, 5 D steps per G step
        "wgan_gp_cifar10": (["experiment=wgan_gp_cifar10", *CIFAR], 25),
        "mlp_cifar10": (["experiment=mlp_cifar10", *CIFAR], 500),
        "neither": (["experiment=fast_cifar10", *CIFAR, "model.diffaugment=null", "model.ada=null"], 200),
        "DiffAugment": (["experiment=fast_cifar10", *CIFAR, "model.diffaugment=[color,translation,cutout]", "model.ada=null"], 200),
        "ADA": (["experiment=fast_cifar10", *CIFAR, "model.diffaugment=null", "model.ada=0.6"], 200),
    }},
    # StyleGAN2-ADA's CPU preset against the fast recipes, with the digits and augment_cifar10-5k studies' budgets
    # (docs/guide/stylegan2.md)
    "stylegan2_digits": {"budget": 180, "recipes": {
        "fast_digits": (["experiment=fast_digits"], 500),
        "stylegan2_digits": (["experiment=stylegan2_digits"], 60),
    }},
    "stylegan2_cifar10-5k": {"budget": 120, "recipes": {
        "fast_cifar10 (ADA, as shipped)": (["experiment=fast_cifar10", *CIFAR], 200),
        "stylegan2_digits (its networks on CIFAR's 3 channels)": (["experiment=stylegan2_digits", *CIFAR], 40),
    }},
}


def command_for(overrides: list[str], run_dir: Path, seconds: float, eval_every: int, seed: int) -> list[str]:
    return ["gantrain", *overrides, *SCORING, f"trainer.max_seconds={seconds:.1f}", f"trainer.eval_every={eval_every}",
            f"seed={seed}", f"hydra.run.dir={run_dir}"]


def warm_up(overrides: list[str], run_dir: Path) -> None:
    """One step and one small evaluation of a recipe, so what gantrain computes once and caches (the decoded
    images, the evaluation classifier, the real features) is not counted as the first timed seed's start-up."""
    command = ["gantrain", *overrides, "metrics.metrics=[fid]", "metrics.num_samples=500", "trainer.progress=false",
               "trainer.max_steps=1", "trainer.eval_every=1", f"hydra.run.dir={run_dir}"]
    print("warm-up:", " ".join(command), flush=True)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    shutil.rmtree(run_dir, ignore_errors=True)


def curve_of(run_dir: Path, wall: float) -> dict:
    """A finished run's curve: (seconds from launch, FID, step) per evaluation; start-up is the command's wall
    time less the run's own (from the start of training to its end, evaluations included)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    startup = wall - summary["wall_seconds"]
    return {"startup": round(startup, 2), "command_wall": round(wall, 2), "steps": summary["steps"],
            "train_seconds": summary["train_seconds"],
            "points": [(round(startup + e["seconds"], 2), e["fid"], e["step"]) for e in summary["evaluations"]]}


def run_all(jobs: list[tuple[list[str], Path]], parallel: int) -> None:
    """Run the commands, `parallel` at a time, each with cores/parallel threads; write each run's curve.json."""
    threads = max((os.cpu_count() or 2) // parallel, 1)
    env = os.environ | {"OMP_NUM_THREADS": str(threads)}
    pending, running = [j for j in jobs if not (j[1] / "curve.json").is_file()], []
    while pending or running:
        while pending and len(running) < parallel:
            command, run_dir = pending.pop(0)
            shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again (its curve would be short)
            print(" ".join(command), flush=True)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            log = open(run_dir.parent / f"{run_dir.name}.log", "w")
            running.append((subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env),
                            run_dir, time.perf_counter(), command))
        time.sleep(0.5)
        for job in list(running):
            process, run_dir, started, command = job
            if process.poll() is None:
                continue
            running.remove(job)
            if process.returncode:
                sys.exit(f"failed ({run_dir.parent / run_dir.name}.log): {' '.join(command)}")
            curve = curve_of(run_dir, time.perf_counter() - started) | {"threads": threads, "parallel": parallel}
            (run_dir / "curve.json").write_text(json.dumps(curve))


def band(curves: list[dict]) -> list[tuple[float, float, float, float]]:
    """(seconds, mean, min, max) at each evaluation index all seeds reached, seconds averaged."""
    n = min(len(c["points"]) for c in curves)
    out = []
    for i in range(n):
        xs, ys = [c["points"][i][0] for c in curves], [c["points"][i][1] for c in curves]
        out.append((statistics.mean(xs), statistics.mean(ys), min(ys), max(ys)))
    return out


def pyplot():
    """matplotlib's pyplot drawing to files only (no display needed), imported when a picture is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot(results: dict, title: str, path: Path) -> None:
    plt = pyplot()

    many = len(results) > 4  # then the legend goes beside the axes, where it hides no curve
    fig, ax = plt.subplots(figsize=(9.0 if many else 6.4, 3.8), dpi=110)
    for name, curves in results.items():
        points = band(curves)
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", markersize=3, label=f"{name} ({len(curves)} seeds)")
        ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel(f"wall time from launch, s ({conditions(results)}; evaluations excluded)")
    ax.set_ylabel("classifier FID (10k samples)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, **({"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if many else {}))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"plot -> {path}")


def conditions(results: dict) -> str:
    """How the runs shared the machine, for the x axis: '2 CPU cores', or '2 runs at a time, 1 core each'."""
    cores = os.cpu_count() or 2
    shares = {(c.get("parallel", 1), c.get("threads", cores)) for curves in results.values() for c in curves}
    if shares == {(1, cores)}:
        return f"{cores} CPU cores"
    return "; ".join(f"{p} run{'s' * (p > 1)} at a time, {t} thread{'s' * (t > 1)} each" for p, t in sorted(shares))


def grids(run_dirs: dict, title: str, path: Path) -> None:
    """Each recipe's final fixed-noise grid (its first seed) beside the real images: what the FIDs look like."""
    from PIL import Image

    plt = pyplot()

    panels = [(name, run_dir / "final.png") for name, run_dir in run_dirs.items()]
    panels.append(("real images", next(iter(run_dirs.values())) / "samples" / "real.png"))
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 * len(panels), 2.9), dpi=100)
    for ax, (name, png) in zip(axes, panels):
        ax.imshow(Image.open(png))
        ax.set_title(name.split(" (")[0], fontsize=9)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.canvas.draw()  # a 256-colour PNG: a third of the size, no visible difference at this scale
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).quantize(256).save(path, optimize=True)
    print(f"grids -> {path}")


def value_at(points: list, at: float) -> float | None:
    """FID at `at` seconds from launch: interpolated (linearly in log FID) between the evaluations around it, the
    last one when the run ended before `at`, None before the first evaluation."""
    before = [p for p in points if p[0] <= at]
    after = [p for p in points if p[0] > at]
    if not before:
        return None
    (x0, y0, _), nxt = before[-1], after[0] if after else None
    if nxt is None or x0 == at:
        return y0
    x1, y1, _ = nxt
    return math.exp(math.log(y0) + (at - x0) / (x1 - x0) * (math.log(y1) - math.log(y0)))


def table(results: dict, times: list[float]) -> str:
    """The study table's rows: FID (mean ± std over seeds) at each time from launch, and each seed's steps."""
    head = " | ".join(f"FID at {t:g} s" for t in times)
    rows = [f"| recipe | {head} | steps trained (per seed) |", "|---" * (len(times) + 2) + "|"]
    for name, curves in results.items():
        cells = []
        for t in times:
            values = [v for c in curves if (v := value_at(c["points"], t)) is not None]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            partial = f"; {len(values)} of {len(curves)} seeds evaluated by then" if len(values) < len(curves) else ""
            cells.append(f"{statistics.mean(values):.2f} ± {spread:.2f} ({', '.join(f'{v:.2f}' for v in values)}"
                         f"{partial})" if values else "n/a")
        rows.append(f"| {name} | {' | '.join(cells)} | {', '.join(str(c['steps']) for c in curves)} |")
    return "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=list(STUDIES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=float, help="seconds from launch (default: the study's)")
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--recipes", nargs="*", help="a subset of the study's recipes")
    parser.add_argument("--out", default="outputs/time_to_quality")
    parser.add_argument("--at", type=float, nargs="*", help="the table's times from launch (default: the budget)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at once, each with cores/parallel threads")
    parser.add_argument("--startup", type=float, default=8.0, help="seconds of start-up to leave out of the budget")
    parser.add_argument("--plot", help="PNG path (default: docs/studies/time_to_quality_<study>.png)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    study = STUDIES[args.study]
    budget = args.budget or study["budget"]
    data = str(Path(args.data).resolve())
    runs = {}
    for name, (overrides, every) in study["recipes"].items():
        if args.recipes and name not in args.recipes:
            continue
        overrides = [o.format(data=data) for o in overrides]
        slug = name.split(" (")[0].replace(" ", "_")
        run_dirs = [(REPO / args.out / args.study / slug / f"seed{s}").resolve() for s in args.seeds]
        if any(not (run_dir / "curve.json").is_file() for run_dir in run_dirs):
            warm_up(overrides, REPO / args.out / args.study / "warm-up")
        runs[name] = [(command_for(overrides, run_dir, budget - args.startup, every, s), run_dir)
                      for s, run_dir in zip(args.seeds, run_dirs)]
    # seed-major: each seed of every recipe before the next seed, so whatever else the machine does at a time
    # falls on all recipes alike
    run_all([jobs[i] for i in range(len(args.seeds)) for jobs in runs.values()], args.parallel)
    results = {name: [json.loads((run_dir / "curve.json").read_text()) for _, run_dir in jobs] for name, jobs in runs.items()}
    out = REPO / args.out / f"{args.study}.json"
    out.write_text(json.dumps(results, indent=1))
    print(table(results, args.at or [budget]))
    png = Path(args.plot or REPO / "docs" / "studies" / f"time_to_quality_{args.study}.png")
    plot(results, f"{args.study}: time to quality on 2 CPU cores", png)
    grids({name: jobs[0][1] for name, jobs in runs.items()},
          f"{args.study}: final fixed-noise grids (seed {args.seeds[0]})", png.with_name(f"{png.stem}_grids.png"))


if __name__ == "__main__":
    main()
