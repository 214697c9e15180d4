"""How long one evaluation takes: 10,000 generated 28x28 samples scored with the classifier extractor
(FID, KID, IS, precision/recall) against cached real MNIST statistics.

    python scripts/eval_speed.py --root ../shared/data [--run outputs/DATE/TIME] [--repeats 3]

A quick check of the script itself (what the tests run, on a tiny MNIST):
    python scripts/eval_speed.py --root DIR --num-samples 64 --real-samples 128 --classifier-epochs 1 --repeats 1

The first call trains and caches the evaluation classifier and the real features (reported
separately); the timed calls are what `trainer.eval_every` costs during training.
"""

import argparse
import time

from hydra import compose, initialize_config_module
from hydra.utils import instantiate

from gantrain.config.build import build_system, system_from_checkpoint
from gantrain.metrics.evaluator import Evaluator
from gantrain.training.checkpoint import load_checkpoint


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data", help="folder holding MNIST/raw")
    parser.add_argument("--run", default=None, help="a trained cs231n_dcgan run (default: an untrained generator)")
    parser.add_argument("--num-samples", type=int, default=10000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--real-samples", type=int, default=50000, help="real images whose features are cached")
    parser.add_argument("--classifier-epochs", default="auto", help="epochs of the evaluation classifier (auto: its default)")
    return parser


def main() -> None:
    args = build_parser().parse_args()
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", ["experiment=cs231n_dcgan", f"data.root={args.root}"])
    data = instantiate(cfg.data)
    started = time.perf_counter()
    epochs = args.classifier_epochs if args.classifier_epochs == "auto" else int(args.classifier_epochs)
    evaluator = Evaluator(data, num_samples=args.num_samples, real_samples=args.real_samples,
                          classifier_epochs=epochs, device="cpu")
    print(f"setup (classifier and real features, cached after the first run): {time.perf_counter() - started:.1f} s")
    system = system_from_checkpoint(load_checkpoint(args.run)) if args.run else build_system(cfg, data.shape, data.num_classes)
    system.eval()
    for i in range(args.repeats):
        started = time.perf_counter()
        values = evaluator(system)
        print(f"evaluation {i + 1}: {args.num_samples} samples in {time.perf_counter() - started:.1f} s  "
              + "  ".join(f"{k} {v:.4g}" for k, v in values.items()))


if __name__ == "__main__":
    main()
