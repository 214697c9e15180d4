"""Are a run's digits as recognisable as real ones? The acceptance check of the default `gantrain` run.

Usage: python scripts/digits_check.py RUN [--n 1797] [--seed 1] [--json out.json]
       python scripts/digits_check.py --real        # the check applied to real held-out digits (a sanity line)

A classifier trained on the real digits (gantrain's evaluation classifier: trained once on 90% of the 1,797
bundled digits, cached) reads n samples of the run's generator. The samples pass when
  - confidence: their mean top-class probability is at least 90% of the held-out real digits' mean,
  - classes:    every class is at least 5% of the samples (the classifier's top class),
  - novelty:    the median pixel distance from a sample to its nearest training digit is at least half the
                training digits' own median nearest-neighbour distance (no copies of training digits),
  - recall:     the improved recall (Kynkaanniemi et al., k=3, classifier features) is at least 0.5
                (the samples cover the real digits' variety, not a few per class).
Exit status 0 when all four pass, 1 otherwise. Nothing is written except the optional JSON.
"""

import argparse
import json
import sys

import numpy as np
import torch

from gantrain.data.digits import digits
from gantrain.data.pixels import to_uint8
from gantrain.metrics import maths
from gantrain.metrics.evaluator import Evaluator, real_images
from gantrain.metrics.extractors import holdout_split

CONFIDENCE_RATIO, MIN_CLASS_SHARE, NOVELTY_RATIO, MIN_RECALL = 0.9, 0.05, 0.5, 0.5


def reference(n: int, classifier_epochs: int | str = "auto", image_size: int = 32) -> Evaluator:
    """The evaluator of the bundled digits at the run's size (its classifier and real features), scoring n samples."""
    return Evaluator(digits(image_size), metrics=["pr"], num_samples=n, real_samples=10**9, device="cpu", seed=0,
                     classifier_epochs=classifier_epochs)


def heldout_digits(evaluator: Evaluator) -> tuple[torch.Tensor, torch.Tensor]:
    """(the classifier's training digits, its held-out digits): the split it was trained with."""
    train, held = holdout_split(len(evaluator.real), evaluator.seed)
    return evaluator.real[train], evaluator.real[held]


def pixels(images: torch.Tensor) -> np.ndarray:
    """Images as rows of pixels in [0, 1], for Euclidean distances between them."""
    return images.flatten(1).double().numpy() / 255


def check(fake: torch.Tensor, evaluator: Evaluator, training: torch.Tensor) -> dict:
    """The four figures of uint8 samples (N, 1, S, S) against the real digits, with their verdicts."""
    _, held = heldout_digits(evaluator)
    _, real_probs = evaluator.extractor(held)
    _, probs = evaluator.extractor(fake)
    shares = np.bincount(probs.argmax(1), minlength=10) / len(fake)
    novelty = float(np.median(maths.pairwise_distances(pixels(fake), pixels(training)).min(axis=1)))
    spacing = float(np.median(maths.knn_radii(pixels(training), k=1)))  # each digit's nearest other digit
    scores = evaluator.score(fake)
    out = {
        "samples": len(fake),
        "confidence": float(probs.max(1).mean()), "real_confidence": float(real_probs.max(1).mean()),
        "class_shares": [round(float(s), 4) for s in shares],
        "nn_distance": novelty, "real_nn_distance": spacing,
        "precision": float(scores["precision"]), "recall": float(scores["recall"]),
    }
    out["confidence_ratio"] = out["confidence"] / out["real_confidence"]
    out["nn_ratio"] = novelty / spacing
    out["passes"] = {
        "confidence": out["confidence_ratio"] >= CONFIDENCE_RATIO,
        "classes": float(shares.min()) >= MIN_CLASS_SHARE,
        "novelty": out["nn_ratio"] >= NOVELTY_RATIO,
        "recall": out["recall"] >= MIN_RECALL,
    }
    return out


def run_samples(run: str, n: int, seed: int) -> torch.Tensor:
    """n uint8 samples of a run's generator (its EMA copy when it has one), drawn with `seed`."""
    from gantrain.generate.sampling import load_sampler

    _, system = load_sampler(run, "cpu")
    return to_uint8(system.sample(n, generator=torch.Generator().manual_seed(seed)))


def report(out: dict) -> str:
    p = out["passes"]
    mark = {True: "pass", False: "FAIL"}
    return "\n".join([
        f"confidence {out['confidence']:.3f} vs real {out['real_confidence']:.3f}: ratio {out['confidence_ratio']:.3f} "
        f"(>= {CONFIDENCE_RATIO}) {mark[p['confidence']]}",
        f"class shares {min(out['class_shares']):.3f}..{max(out['class_shares']):.3f} (each >= {MIN_CLASS_SHARE}) "
        f"{mark[p['classes']]}",
        f"nearest training digit {out['nn_distance']:.3f} vs training spacing {out['real_nn_distance']:.3f}: ratio "
        f"{out['nn_ratio']:.3f} (>= {NOVELTY_RATIO}) {mark[p['novelty']]}",
        f"precision {out['precision']:.3f}, recall {out['recall']:.3f} (>= {MIN_RECALL}) {mark[p['recall']]}",
    ])


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", help="a run directory (or checkpoint) of a model trained on data=digits")
    parser.add_argument("--real", action="store_true", help="check held-out real digits against the training split")
    parser.add_argument("--n", type=int, default=1797, help="samples to draw (default: as many as real digits)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="write the figures here too")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.run and not args.real:
        parser.error("give a run directory, or --real")
    if args.real:
        evaluator = reference(args.n)
        training, fake = heldout_digits(evaluator)
    else:
        fake = run_samples(args.run, args.n, args.seed)
        size = fake.shape[-1]  # the run's data.image_size
        evaluator = reference(len(fake), image_size=size)
        training = real_images(digits(size), 10**9)[0]
    out = check(fake, evaluator, training)
    print(report(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0 if all(out["passes"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
