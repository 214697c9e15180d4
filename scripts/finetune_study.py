"""Fine-tuning on small data: a network trained on full MNIST, fine-tuned on 100, 300 and 1,000 bundled digits (with
and without FreezeD), against training on those digits from scratch, at equal training time, several seeds.

Usage: python scripts/finetune_study.py [--seeds 0 1 2] [--sizes 100 300 1000] [--budget 120] [--source-steps 3000]
                                        [--every 400] [--freeze 2] [--data ../shared/data] [--out outputs/finetune_study]
                                        [--plot docs/studies/finetune.png] [--num-samples 5000]
Needs matplotlib for the plot (pip install -e ".[plots]") and full MNIST under --data (MNIST/raw).

Method. The networks are the default run's (DCGAN at 32x32, 32 channels in G and D, hinge loss, G at 2.3x D's
learning rate, an EMA of G, lazy R1). For each seed S:
  - source: `gantrain data=mnist data.image_size=32 ...` trains those networks on the 60,000 MNIST digits, resized to
    the bundled digits' 32x32, for --source-steps steps (the default recipe's EMA and R1, no ADA: 60,000 images need
    no augmentation). Its training time is recorded but not charged to the arms: it stands for a network one
    downloads, trained once and fine-tuned many times.
  - for each size N, the target is N of the 1,797 bundled 8x8 digits (upscaled to 32x32), `data.limit=N` with
    data.limit_seed=0: the same images for every arm and seed, and the 100 among the 300 among the 1,000. Three arms
    train on them with the default run's recipe (its EMA, ADA, R1 and learning rates) for --budget seconds of
    training each (trainer.max_seconds; start-up and checkpoint scoring excluded), one run at a time on every core:
      scratch          randomly initialised networks;
      finetune         trainer.init_from=<the source of seed S>: G, D and the EMA from MNIST, all of them trained;
      finetune+FreezeD the same with model.discriminator.freeze=--freeze (of D's 3 blocks at 32x32; its last block
                       and output layer train).
Judging. Every --every steps a checkpoint is kept; after training each is scored against all 1,797 digits, not
only the N the run saw: classifier FID (gantrain's evaluation classifier, the one `gantrain-eval` and
scripts/digits_check.py use, trained on 90% of the digits; its held-out accuracy is printed and must be >= 0.9) of
--num-samples samples of the EMA generator (5,000: scoring 10,000 costs as much as training for half a minute, per
checkpoint; FIDs of different sample counts are not comparable, so compare within this study). The last checkpoint
also gets scripts/digits_check.py's figures on 1,797 samples, with its novelty measured against the N digits the
run trained on (a small set invites copying): confidence ratio (samples' top-class confidence over real digits'),
the smallest class share, nearest-training-digit distance ratio, precision and recall.
Outputs (rerunning the command re-makes the table, plot and grids; finished runs and scores are read, not redone;
delete a run's folder to redo it): <out>/<arm>/n<N>/seed<S> run folders with scores.json, <out>/source/seed<S>,
<out>/finetune_study.json (every figure), the table on stdout, the plot (FID against training seconds, one panel per
N, mean over seeds with the min-max band) and <plot>_grids.png (each arm's final fixed-noise grid, seed 0, per N).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts this study reuses
import digits_check  # noqa: E402
import time_to_quality  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ARMS = ("scratch", "finetune", "finetune+FreezeD")
NETWORKS = ["model.generator.width=32", "model.discriminator.width=32"]  # the default run's, on both sides
# the default recipe (configs/hydra/default_recipe/digits_dcgan.yaml) less ADA, spelt out: it applies to data=digits only
SOURCE = ["data=mnist", "data.image_size=32", *NETWORKS, "model.ema=0.995", "model.ema_start=500", "loss.r1=0.2",
          "loss.r1_every=4", "optim.lr=6.5e-4", "optim.generator.lr=1.495e-3"]
QUIET = ["trainer.progress=false"]


def gantrain(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "gantrain", *overrides]


def source_command(seed: int, data: str, steps: int, run_dir: Path) -> list[str]:
    return gantrain(*SOURCE, f"data.root={data}", f"trainer.max_steps={steps}", f"trainer.checkpoint_every={steps}",
                    f"trainer.sample_every={steps}", *QUIET, f"seed={seed}", f"hydra.run.dir={run_dir}")


def arm_command(arm: str, size: int, seed: int, source: Path, budget: float, every: int, freeze: int,
                run_dir: Path) -> list[str]:
    start = {"scratch": [], "finetune": [f"trainer.init_from={source}"],
             "finetune+FreezeD": [f"trainer.init_from={source}", f"model.discriminator.freeze={freeze}"]}[arm]
    return gantrain("data=digits", f"data.limit={size}", *NETWORKS, *start, "trainer.max_steps=1000000",
                    f"trainer.max_seconds={budget:g}", f"trainer.checkpoint_every={every}", "trainer.keep_checkpoints=1000",
                    f"trainer.sample_every={every}", *QUIET, f"seed={seed}", f"hydra.run.dir={run_dir}")


def finished(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "summary.json").read_text())["status"] in ("finished", "stopped_early")
    except (OSError, ValueError, KeyError):
        return False


def train(command: list[str], run_dir: Path) -> None:
    """One run (skipped when it already finished), its output in <run_dir>.log; a failure stops the study."""
    if finished(run_dir):
        return
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    print(" ".join(command[2:]), flush=True)
    with open(run_dir.parent / f"{run_dir.name}.log", "w") as log:
        if subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"failed ({run_dir.parent / run_dir.name}.log): {' '.join(command)}")


def score(run_dir: Path, evaluator, checker, trained_on: torch.Tensor) -> dict:
    """FID of every kept checkpoint against all the digits, (training seconds, FID, step) in order, and the last
    checkpoint's digits_check figures (as `python scripts/digits_check.py RUN` gives them, but with novelty measured
    against `trained_on`); cached in <run_dir>/scores.json."""
    from gantrain.data.pixels import to_uint8
    from gantrain.generate.sampling import load_sampler

    cached = run_dir / "scores.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    points, system = [], None
    for path in sorted((run_dir / "checkpoints").glob("step_*.pt")):  # the last one is the run's final step
        state, system = load_sampler(str(path), "cpu")
        fake = to_uint8(system.sample(evaluator.num_samples, generator=torch.Generator().manual_seed(1)))
        points.append((round(float(state["train_seconds"]), 2), float(evaluator.score(fake)["fid"]), int(state["step"])))
    fake = to_uint8(system.sample(checker.num_samples, generator=torch.Generator().manual_seed(1)))
    final = digits_check.check(fake, checker, trained_on)
    summary = json.loads((run_dir / "summary.json").read_text())
    scores = {"points": points, "steps": summary["steps"], "train_seconds": summary["train_seconds"],
              "final": {key: final[key] for key in ("confidence_ratio", "class_shares", "nn_ratio", "precision", "recall")}}
    cached.write_text(json.dumps(scores))
    return scores


def mean_spread(values: list[float], digits: int = 2) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {spread:.{digits}f}"


def table(results: dict) -> str:
    """One row per (N, arm): final FID (mean ± std over seeds, then each seed), best FID, digits_check figures."""
    rows = ["| images | arm | FID at the budget | best FID | confidence ratio | smallest class | NN ratio | recall | "
            "steps |", "|---|---|---|---|---|---|---|---|---|"]
    for size, arms in results.items():
        for arm, runs in arms.items():
            final = [r["points"][-1][1] for r in runs]
            rows.append(
                f"| {size} | {arm} | {mean_spread(final)} ({', '.join(f'{v:.2f}' for v in final)}) | "
                f"{mean_spread([min(p[1] for p in r['points']) for r in runs])} | "
                f"{mean_spread([r['final']['confidence_ratio'] for r in runs], 3)} | "
                f"{mean_spread([min(r['final']['class_shares']) for r in runs], 3)} | "
                f"{mean_spread([r['final']['nn_ratio'] for r in runs])} | "
                f"{mean_spread([r['final']['recall'] for r in runs], 3)} | {', '.join(str(r['steps']) for r in runs)} |")
    return "\n".join(rows)


def verdicts(results: dict) -> list[str]:
    """Per N and fine-tuning arm, its final FID less scratch's, said plainly: better only when the difference is
    larger than the seeds' spread of both."""
    lines = []
    for size, arms in results.items():
        scratch = [r["points"][-1][1] for r in arms["scratch"]]
        for arm in ARMS[1:]:
            tuned = [r["points"][-1][1] for r in arms[arm]]
            gap = statistics.mean(tuned) - statistics.mean(scratch)
            noise = sum(statistics.stdev(v) if len(v) > 1 else 0.0 for v in (tuned, scratch))
            word = "helps" if gap < -noise else "hurts" if gap > noise else "makes no clear difference"
            lines.append(f"{size} images: {arm} {word} (FID {gap:+.2f} against scratch; seeds' spread {noise:.2f})")
    return lines


def plot(results: dict, budget: float, path: Path) -> None:
    plt = time_to_quality.pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), dpi=110, sharey=True, squeeze=False)
    for ax, (size, arms) in zip(axes[0], results.items()):
        for arm, runs in arms.items():
            points = time_to_quality.band(runs)
            xs = [p[0] for p in points]
            ax.plot(xs, [p[1] for p in points], marker="o", markersize=3, label=f"{arm} ({len(runs)} seeds)")
            ax.fill_between(xs, [p[2] for p in points], [p[3] for p in points], alpha=0.2)
        ax.set_yscale("log")
        ax.set_title(f"{size} digits", fontsize=10)
        ax.set_xlabel("training seconds")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].set_ylabel("classifier FID against all 1,797 digits")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"MNIST -> digits: fine-tuning against scratch, {budget:g} s each on {os.cpu_count()} CPU cores",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    print(f"plot -> {path}")


def grids(run_dirs: dict, path: Path) -> None:
    """Rows: N; columns: each arm's final grid (seed 0), then the N real digits' preview."""
    from PIL import Image

    plt = time_to_quality.pyplot()
    columns = [*ARMS, "real (the N digits)"]
    fig, axes = plt.subplots(len(run_dirs), len(columns), figsize=(2.4 * len(columns), 2.5 * len(run_dirs)), dpi=100,
                             squeeze=False)
    for row, (size, arms) in zip(axes, run_dirs.items()):
        pictures = [arms[arm] / "final.png" for arm in ARMS] + [arms["scratch"] / "samples" / "real.png"]
        for ax, name, png in zip(row, columns, pictures):
            ax.imshow(Image.open(png))
            ax.set_title(f"{name}, {size}" if name in ARMS else name, fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.canvas.draw()
    Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]).quantize(256).save(path, optimize=True)
    print(f"grids -> {path}")


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the study's command with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--budget", type=float, default=120.0, help="training seconds of every arm")
    parser.add_argument("--source-steps", type=int, default=3000, help="steps of the MNIST source network")
    parser.add_argument("--every", type=int, default=400, help="steps between scored checkpoints")
    parser.add_argument("--freeze", type=int, default=2, help="D's blocks FreezeD freezes (of 3 at 32x32)")
    parser.add_argument("--data", default="../shared/data", help="the folder holding MNIST/raw")
    parser.add_argument("--out", default="outputs/finetune_study")
    parser.add_argument("--plot", default="docs/studies/finetune.png")
    parser.add_argument("--num-samples", type=int, default=5000, help="samples per scored checkpoint's FID")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    from gantrain.data.digits import digits
    from gantrain.data.base import take
    from gantrain.metrics.evaluator import Evaluator

    data, out = str(Path(args.data).resolve()), (REPO / args.out).resolve()
    started = time.perf_counter()
    evaluator = Evaluator(digits(32), metrics=["fid"], num_samples=args.num_samples, real_samples=10**9, device="cpu",
                          seed=0)
    checker = digits_check.reference(1797)  # the same classifier (cached once): 1,797 samples, as the script draws
    accuracy = evaluator.extractor.info["heldout_accuracy"]
    print(f"evaluation classifier: held-out accuracy {accuracy:.3f} on the digits", flush=True)
    if accuracy < 0.9:
        sys.exit("the evaluation classifier is below 0.9 held-out accuracy: its FIDs would not be worth a table")
    every = digits(32)
    results = {size: {arm: [] for arm in ARMS} for size in args.sizes}
    run_dirs = {size: {} for size in args.sizes}
    for seed in args.seeds:  # seed-major: whatever else the machine does at a time falls on every arm alike
        source = out / "source" / f"seed{seed}"
        train(source_command(seed, data, args.source_steps, source), source)
        for size in args.sizes:
            trained_on = take(every.x, every.labels, size, 0, "digits")[0]  # what data.limit=size gives
            for arm in ARMS:
                run_dir = out / arm.replace("+", "_") / f"n{size}" / f"seed{seed}"
                train(arm_command(arm, size, seed, source, args.budget, args.every, args.freeze, run_dir), run_dir)
                results[size][arm].append(score(run_dir, evaluator, checker, trained_on))
                run_dirs[size].setdefault(arm, run_dir)
    sources = [json.loads((out / "source" / f"seed{s}" / "summary.json").read_text()) for s in args.seeds]
    figures = {"classifier_heldout_accuracy": accuracy, "budget": args.budget, "freeze": args.freeze,
               "source": {"steps": args.source_steps, "train_seconds": [s["train_seconds"] for s in sources]},
               "results": results}
    (out / "finetune_study.json").write_text(json.dumps(figures, indent=1))
    print(table(results))
    print("\n".join(verdicts(results)))
    print(f"source networks: {args.source_steps} steps on MNIST in {mean_spread(figures['source']['train_seconds'], 0)} "
          f"training seconds; study wall time {time.perf_counter() - started:.0f} s")
    png = REPO / args.plot
    plot(results, args.budget, png)
    grids(run_dirs, png.with_name(f"{png.stem}_grids.png"))


if __name__ == "__main__":
    main()
