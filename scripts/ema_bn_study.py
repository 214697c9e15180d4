"""Which BatchNorm statistics the EMA generator should be sampled with, measured over seeds.

Usage: python scripts/ema_bn_study.py [--seeds 0 1 2] [--steps 1300] [--data /work/shared/data]
           [--out outputs/ema_bn_study] [--samples 10000] [--standing 1000 2000 10000]
           [--doc outputs/ema_bn_study/tables.md]

Each seed trains one run in-process, as `gantrain experiment=cs231n_dcgan data.root=DATA trainer.max_steps=STEPS
trainer.amp=bf16 trainer.channels_last=true model.ema=0.999 model.ema_start=300 seed=SEED` would, and
scores variants of its final weights with gantrain's Evaluator (FID, KID, precision/recall on the features
of the MNIST classifier):
  G                      the raw generator, its own running statistics
  EMA + G's BN stats     the EMA weights with G's current buffers: what gantrain sampled before (buffers
                         were copied from G each step, so the old EMA's buffers equal G's)
  EMA + averaged BN      the EMA weights with running statistics averaged with the same decay (option a)
  EMA + standing N       the EMA weights with statistics recomputed from N of its own samples (option b;
                         gantrain now samples like "standing 1000": 8 batches of 128)
  G + standing N         the raw generator with standing statistics (for reference)
Option (a) and (b) together sample exactly like (b): standing statistics replace whatever was held.
"""

import argparse
import copy
import hashlib
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch import nn

import gantrain.cli  # noqa: F401  (registers the config resolvers)
from gantrain.config.build import build_data, build_trainer, system_from_checkpoint
from gantrain.metrics.evaluator import Evaluator
from gantrain.systems.ema import standing_statistics
from gantrain.training.checkpoint import load_checkpoint

STUDY_SEED = 12345  # noise for the standing statistics here (scoring draws from seed 1)
METRICS = (("fid", "FID", 2), ("kid", "KID x 1e3", 2), ("precision", "precision", 3), ("recall", "recall", 3))


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1300)
    p.add_argument("--ema-start", type=int, default=300)
    p.add_argument("--data", default="/work/shared/data", help="folder holding MNIST/raw")
    p.add_argument("--out", default="outputs/ema_bn_study", help="run directories and results.json")
    p.add_argument("--doc", default="outputs/ema_bn_study/tables.md",
                   help="where the markdown tables go (docs/studies/ema_bn.md is the study written up from them)")
    p.add_argument("--samples", type=int, default=10000, help="generated images per score")
    p.add_argument("--standing", type=int, nargs="+", default=[1000, 2000, 10000],
                   help="sample counts for standing statistics")
    p.add_argument("--kid-subsets", type=int, default=100)
    p.add_argument("--classifier-epochs", type=int, default=3, help="training length of the evaluation classifier")
    p.add_argument("--reuse", action="store_true",
                   help="score OUT/seed_N/checkpoints/last.pt and averaged_statistics.pt of an earlier run instead of training")
    p.add_argument("overrides", nargs="*", help="extra gantrain overrides, e.g. trainer.batch_size=16")
    return p


def compose_run(args: argparse.Namespace, seed: int):
    overrides = ["experiment=cs231n_dcgan", f"data.root={args.data}", f"trainer.max_steps={args.steps}",
                 "trainer.amp=bf16", "trainer.channels_last=true", "model.ema=0.999",
                 f"model.ema_start={args.ema_start}", f"seed={seed}", "trainer.progress=false", *args.overrides]
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return compose("config", overrides=overrides), overrides


class AveragedStatistics:
    """Option (a), tracked beside the run: G's running means and variances averaged with the EMA's decay from its
    start (other buffers copied), exactly as the EMA averages G's weights; what BigGAN's EMA does with buffers."""

    NAMES = ("running_mean", "running_var")

    def __init__(self, system: nn.Module):
        self.decay, self.start = system.ema.decay, system.ema.start
        self.buffers = [b.clone() for b in system.ema.network.buffers()]  # the EMA starts as a copy of G
        modules = dict(system.ema.network.named_modules())
        self.averaged = [leaf in self.NAMES and isinstance(modules[parent], nn.modules.batchnorm._NormBase)
                         for parent, _, leaf in (name.rpartition(".") for name, _ in system.ema.network.named_buffers())]

    @torch.no_grad()
    def update(self, G: nn.Module, step: int) -> None:
        for mine, theirs, averaged in zip(self.buffers, G.buffers(), self.averaged, strict=True):
            if averaged and step > self.start:
                mine.lerp_(theirs, 1.0 - self.decay)
            else:
                mine.copy_(theirs)

    def follow(self, system: nn.Module) -> None:
        """Update after each of the system's G steps, as its EMA is."""
        after_g_step = system.after_g_step

        def both(step: int) -> None:
            after_g_step(step)
            self.update(system.G, step)

        system.after_g_step = both


def trained_system(args: argparse.Namespace, seed: int) -> tuple[nn.Module, list[torch.Tensor]]:
    """The final state of one run and its averaged statistics: trained here, or read back with --reuse."""
    cfg, _ = compose_run(args, seed)
    run_dir = Path(args.out) / f"seed_{seed}"
    last, averaged = run_dir / "checkpoints" / "last.pt", run_dir / "averaged_statistics.pt"
    if args.reuse and last.is_file() and averaged.is_file():
        return system_from_checkpoint(load_checkpoint(str(last))).eval(), torch.load(averaged, weights_only=True)
    started = time.perf_counter()
    trainer = build_trainer(cfg, run_dir, meta={"config": OmegaConf.to_container(cfg, resolve=True), "choices": {}})
    shadow = AveragedStatistics(trainer.system)
    shadow.follow(trainer.system)
    trainer.fit()
    torch.save(shadow.buffers, averaged)
    print(f"seed {seed}: trained {args.steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    return trainer.system, shadow.buffers


def with_buffers(network: nn.Module, buffers) -> nn.Module:
    """A copy of network with these buffers (in the order of network.buffers())."""
    network = copy.deepcopy(network)
    for mine, theirs in zip(network.buffers(), buffers, strict=True):
        mine.copy_(theirs)
    return network


def with_standing_statistics(system: nn.Module, network: nn.Module, n: int, batch_size: int) -> nn.Module:
    """A copy of network with standing statistics from ceil(n / batch_size) full batches of its own samples
    (gantrain's own function; the study's noise seed, not the one gantrain samples with)."""
    network = copy.deepcopy(network)
    standing_statistics(network, system.draw, math.ceil(n / batch_size), batch_size, seed=STUDY_SEED)
    return network.eval()


def variants(system: nn.Module, averaged: list[torch.Tensor], standing: list[int], batch_size: int) -> dict[str, nn.Module]:
    """The same final weights with each choice of BatchNorm statistics. The old EMA copied G's buffers every
    step, so its buffers are G's final ones: the EMA weights with G's buffers are exactly what it sampled."""
    out = {"G": system.G, "EMA + G's BN stats (old)": with_buffers(system.ema.network, system.G.buffers()),
           "EMA + averaged BN (a)": with_buffers(system.ema.network, averaged)}
    for n in standing:
        out[f"EMA + standing {n} (b)"] = with_standing_statistics(system, system.ema.network, n, batch_size)
    out[f"G + standing {max(standing)}"] = with_standing_statistics(system, system.G, max(standing), batch_size)
    return out


def score(evaluator: Evaluator, system: nn.Module, network: nn.Module) -> dict[str, float]:
    """The evaluator's numbers for `network` sampled in the EMA's place (system.sample uses the EMA copy)."""
    held = system.ema.network
    system.ema.network, system.ema.fresh = network, True  # fresh: sampled with exactly these statistics
    try:
        scores = evaluator(system)
    finally:
        system.ema.network, system.ema.fresh = held, False
    values = dict(scores)
    values["kid"] *= 1e3
    values["extractor"] = getattr(scores, "extractor", None)  # what the classifier was (newer Evaluators say)
    return values


def classifier_record(evaluator: Evaluator, args: argparse.Namespace, extractor: dict | None) -> dict:
    """Which evaluation classifier the numbers came from: the epochs asked, its weights' hash, the cached file,
    and the Evaluator's own description of its extractor when it gives one."""
    digest = hashlib.sha1()
    for key, tensor in sorted(evaluator.classifier.state_dict().items()):
        digest.update(key.encode() + tensor.cpu().numpy().tobytes())
    files = sorted(evaluator.cache.glob(f"classifier-{evaluator.key}*.pt"))
    return {"classifier_epochs": args.classifier_epochs, "weights_sha1": digest.hexdigest()[:16],
            "cache_files": [str(f) for f in files], "real_images": len(evaluator.real), "key": evaluator.key,
            "extractor": extractor}


def markdown(results: dict, seeds: list[int], meta: dict) -> str:
    names = list(next(iter(results.values())))
    lines = ["# The EMA generator's BatchNorm statistics", "",
             f"Produced by `{meta['command']}` ({meta['date']}, torch {meta['torch']}, {meta['seconds']:.0f} s).", "",
             f"Each seed trains {meta['run']}. Scores: {meta['samples']} generated images against the real set, "
             f"features of the evaluation classifier ({json.dumps(meta['classifier'])}). Mean ± sample std (ddof=1) over seeds.", ""]
    for metric, title, digits in METRICS:
        lines += [f"## {title}", "", "| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std |",
                  "|---|" + "---:|" * (len(seeds) + 1)]
        for name in names:
            row = [results[str(s)][name][metric] for s in seeds]
            std = float(np.std(row, ddof=1)) if len(row) > 1 else 0.0
            lines.append(f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in row)
                         + f" | {np.mean(row):.{digits}f} ± {std:.{digits}f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg, overrides = compose_run(args, args.seeds[0])
    # one evaluator (one classifier, one set of real features) for every seed and variant
    evaluator = Evaluator(build_data(cfg), ["fid", "kid", "pr"], extractor="classifier", num_samples=args.samples,
                          kid_subset_size=min(1000, args.samples), kid_subsets=args.kid_subsets,
                          classifier_epochs=args.classifier_epochs)
    results: dict[str, dict] = {}
    extractor = None
    for seed in args.seeds:
        system, averaged = trained_system(args, seed)
        results[str(seed)] = {}
        for name, network in variants(system, averaged, args.standing, cfg.trainer.batch_size).items():
            values = score(evaluator, system, network)
            extractor = values.pop("extractor")
            results[str(seed)][name] = values
            print(f"seed {seed}  {name:28s} " + "  ".join(f"{k} {values[k]:.4g}" for k, _, _ in METRICS), flush=True)
    meta = {"command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
            "date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "seconds": time.perf_counter() - started,
            "run": "`gantrain " + " ".join(o for o in overrides if not o.startswith(("seed=", "trainer.progress"))) + "`",
            "samples": args.samples, "classifier": classifier_record(evaluator, args, extractor)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    table = markdown(results, args.seeds, meta)
    print(table)
    Path(args.doc).parent.mkdir(parents=True, exist_ok=True)
    Path(args.doc).write_text(table + "\n")


if __name__ == "__main__":
    main()
