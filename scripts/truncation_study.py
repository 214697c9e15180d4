"""The truncation trick's trade-off between quality and diversity, measured: one GAN with normal latents sampled
at several thresholds t (every latent component beyond t drawn again), scored by gantrain's Evaluator
(classifier extractor: FID, IS, precision, recall) and pictured as one grid row per t (the same latents in every
column, truncated more from row to row).

Usage: python scripts/truncation_study.py [--data ../shared/data] [--run RUN] [--out DIR]

Trains what `gantrain experiment=dcgan_mnist trainer.max_steps=1200` trains (z ~ N(0, 1)) into
outputs/truncation_study/run unless --run names a trained run, then writes docs/studies/truncation.png and
prints the study's table (also saved as results.json beside the run). A quick check of the script (what the tests run, on a tiny MNIST):
`--steps 2 --num-samples 64 --real-samples 128 --classifier-epochs 1 --out DIR` trains 2 steps of trainer=debug
and writes everything under DIR, leaving docs/ alone.
"""

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from PIL import Image, ImageDraw
from torchvision.utils import make_grid

from gantrain.config.build import build_data, system_from_checkpoint
from gantrain.data.pixels import to_uint8
from gantrain.metrics.evaluator import Evaluator
from gantrain.training.checkpoint import load_checkpoint
from gantrain.training.loggers import to_pil

REPO = Path(__file__).resolve().parents[1]
THRESHOLDS = [None, 2.0, 1.5, 1.0, 0.7, 0.5, 0.25]  # None: no truncation
STEPS = 1200
COLUMNS = 12


def train(data: Path, run_dir: Path, steps: int | None) -> None:
    """`gantrain experiment=dcgan_mnist trainer.max_steps=1200` (or a quick `steps` of trainer=debug), in this
    process (the same config and Trainer; no second interpreter to start)."""
    import gantrain.cli  # noqa: F401  (registers the config resolvers)
    from gantrain.config.build import build_trainer

    length = [f"trainer.max_steps={STEPS}"] if steps is None else ["trainer=debug", f"trainer.max_steps={steps}"]
    overrides = ["experiment=dcgan_mnist", f"data.root={data}", *length, "trainer.progress=false"]
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", overrides)
    shutil.rmtree(run_dir, ignore_errors=True)
    started = time.perf_counter()
    build_trainer(cfg, run_dir).fit()
    print(f"trained in {(time.perf_counter() - started) / 60:.1f} min: gantrain {' '.join(overrides)}", flush=True)


def picture(system, seed: int) -> Image.Image:
    """A row per threshold: the same COLUMNS latents (one seed), truncated to each t, with t written on the left."""
    rows = [system.sample(COLUMNS, generator=torch.Generator().manual_seed(seed), truncation=t) for t in THRESHOLDS]
    grid = to_pil(make_grid(torch.cat(rows), nrow=COLUMNS, padding=2, normalize=True, value_range=(-1, 1)))
    margin = 44
    canvas = Image.new("RGB", (grid.width + margin, grid.height), "white")
    canvas.paste(grid, (margin, 0))
    draw, row_height = ImageDraw.Draw(canvas), grid.height / len(THRESHOLDS)
    for i, t in enumerate(THRESHOLDS):
        draw.text((4, i * row_height + row_height / 2 - 6), "none" if t is None else f"t={t:g}", fill="black")
    return canvas


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the folder holding MNIST/raw")
    parser.add_argument("--run", default=None, help="a trained run with normal latents (default: train dcgan_mnist)")
    parser.add_argument("--steps", type=int, default=None, help="a quick check: N steps of trainer=debug")
    parser.add_argument("--num-samples", type=int, default=10000, help="generated images per threshold")
    parser.add_argument("--real-samples", type=int, default=10000, help="real training images to compare against")
    parser.add_argument("--classifier-epochs", default="auto", help="the evaluation classifier's epochs (auto: default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="the run and results in OUT, the picture too (default: "
                                                    "outputs/truncation_study, docs/studies/truncation.png)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    out = Path(args.out).resolve() if args.out else REPO / "outputs" / "truncation_study"
    run = Path(args.run) if args.run else out / "run"
    if not args.run:
        train(Path(args.data).resolve(), run, args.steps)
    state = load_checkpoint(run)
    system = system_from_checkpoint(state).eval()
    if system.z_dist != "normal":
        sys.exit(f"truncation_study: {run} draws {system.z_dist} latents; the truncation trick needs normal ones")
    epochs = args.classifier_epochs if args.classifier_epochs == "auto" else int(args.classifier_epochs)
    real = build_data(_saved_data_config(state))
    evaluator = Evaluator(real, ["fid", "is", "pr"], num_samples=args.num_samples, real_samples=args.real_samples,
                          classifier_epochs=epochs, device="cpu", seed=args.seed)
    results = []
    for t in THRESHOLDS:
        started = time.perf_counter()
        fake = system.sample(args.num_samples, generator=torch.Generator().manual_seed(args.seed + 1), truncation=t)
        scores = evaluator.score(to_uint8(fake))
        results.append({"truncation": t, **{k: float(v) for k, v in scores.items()}})
        print(f"t={t}: " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items())
              + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
    picture_path = out / "truncation.png" if args.out else REPO / "docs" / "studies" / "truncation.png"
    picture_path.parent.mkdir(parents=True, exist_ok=True)
    picture(system, args.seed).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        picture_path, optimize=True)  # a 256-colour palette keeps docs/ small
    (out / "results.json").write_text(json.dumps({"run": str(run), "step": state["step"], "extractor": evaluator.extractor.info,
                                                  "num_samples": args.num_samples, "results": results}, indent=2) + "\n")
    print(f"\n{picture_path}\n\n" + table(results, state["step"]))


def _saved_data_config(state: dict):
    """The run's own training data (its saved config), to score against."""
    from omegaconf import OmegaConf

    return OmegaConf.create({"data": state["config"]["data"]})


def table(results: list[dict], step: int) -> str:
    lines = [f"| truncation (dcgan_mnist, step {step:,}) | FID | IS | precision | recall |", "|---|---|---|---|---|"]
    for r in results:
        t = "none" if r["truncation"] is None else f"{r['truncation']:g}"
        lines.append(f"| {t} | {r['fid']:.2f} | {r['is']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
