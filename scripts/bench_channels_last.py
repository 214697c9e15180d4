"""Training speed with and without channels_last (NHWC), side by side, for gantrain's convolutional models.

Usage: python scripts/bench_channels_last.py [--steps 30] [--rounds 3] [--device cpu] [--cifar ../shared/data/cifar10-5k]

Each case builds the real Trainer from `gantrain <overrides>` twice (contiguous and channels_last) and times
its train_step in alternating rounds (A B A B ...), so a machine that speeds up or slows down affects both
sides alike; the figure is the ratio of the medians of the rounds' steps per second. The 3-channel cases
need a folder of images (--cifar); the others use the bundled digits.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_module

from gantrain.config.build import build_trainer, seed_everything

CASES = {  # name -> overrides (the trainer's own settings come after)
    "default": [],  # the default run: DCGAN-32 with 32 channels on the digits
    "dcgan32_digits": ["model.generator.width=64", "model.discriminator.width=64", "model.ema=null", "model.ada=null"],
    "cs231n_dcgan": ["model=infogan", "data.image_size=28", "trainer.batch_size=128", "model.z_dim=96"],
    "resnet_sngan_digits": ["model=resnet", "model.spectral_norm=true"],
    "dcgan32_rgb": ["data=folder", "data.root={cifar}", "data.image_size=32", "data.channels=3"],
    "dcgan64_rgb": ["data=folder", "data.root={cifar}", "data.image_size=64", "data.channels=3"],
}


def trainer_for(overrides: list[str], channels_last: bool, device: str, run_dir: str):
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"trainer.channels_last={channels_last}", f"trainer.device={device}",
                                           "trainer.progress=false"])
    seed_everything(cfg.seed)
    return build_trainer(cfg, run_dir)


def steps_per_second(trainer, steps: int) -> float:
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync()
    return steps / (time.perf_counter() - start)


def bench(overrides: list[str], steps: int, rounds: int, device: str) -> tuple[float, float]:
    """(contiguous steps/s, channels_last steps/s): medians over alternating rounds, after a warm-up round."""
    with tempfile.TemporaryDirectory() as tmp:
        sides = {cl: trainer_for(overrides, cl, device, f"{tmp}/{cl}") for cl in (False, True)}
        for trainer in sides.values():
            trainer.begin()  # what fit() does first: the divergence watch, the logger, the clocks
            steps_per_second(trainer, max(steps // 5, 2))  # warm-up: allocator, oneDNN primitive caches
        rates = {cl: [] for cl in sides}
        for _ in range(rounds):
            for cl, trainer in sides.items():
                rates[cl].append(steps_per_second(trainer, steps))
    return statistics.median(rates[False]), statistics.median(rates[True])


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cifar", default="../shared/data/cifar10-5k", help="a folder of RGB images (class folders)")
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    print(f"| model | contiguous steps/s | channels_last steps/s | ratio |\n|---|---|---|---|")
    for name in args.cases:
        overrides = [o.format(cifar=args.cifar) for o in CASES[name]]
        if any("{cifar}" in o for o in CASES[name]) and not Path(args.cifar).is_dir():
            print(f"| {name} | skipped: no {args.cifar} | | |")
            continue
        plain, nhwc = bench(overrides, args.steps, args.rounds, args.device)
        print(f"| {name} | {plain:.2f} | {nhwc:.2f} | {nhwc / plain:.2f} |", flush=True)


if __name__ == "__main__":
    main()
