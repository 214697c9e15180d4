"""What `gantrain-eval` does: score a trained run, or a folder/.npz of fakes, against real data."""

import json
import logging
from importlib.resources import files
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from gantrain import __version__
from gantrain.config.build import (
    build_test_split,
    instantiate,  # a UserError raised by a target reaches the user as one line
    system_from_checkpoint,
)
from gantrain.data import Data
from gantrain.device import resolve_device
from gantrain.errors import UserError
from gantrain.metrics.evaluator import Evaluator, real_images
from gantrain.metrics.extractors import describe
from gantrain.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)
EVALUATOR_KEYS = ("extractor", "num_samples", "real_samples", "batch_size", "inception_weights", "kid_subsets",
                  "kid_subset_size", "is_splits", "classifier_epochs", "device", "seed")


def dataset_names() -> list[str]:
    return sorted(p.name[:-5] for p in files("gantrain.configs").joinpath("data").iterdir() if p.name.endswith(".yaml"))


def data_config(source: str, overrides: DictConfig, shape: tuple[int, ...] | None = None) -> DictConfig:
    """A data config for `source`: a dataset name (configs/data/<name>.yaml) or an image folder."""
    named = source in dataset_names()
    if named:
        cfg = OmegaConf.load(files("gantrain.configs").joinpath("data", f"{source}.yaml"))
    elif Path(source).expanduser().is_dir():
        cfg = OmegaConf.load(files("gantrain.configs").joinpath("data", "folder.yaml"))
        cfg.root = str(Path(source).expanduser())
    else:
        raise UserError(f"{source}: neither an image folder nor a dataset name ({', '.join(dataset_names())})")
    if shape is not None and "image_size" in cfg:  # match the generator's output
        cfg.image_size = shape[-1]
        if "channels" in cfg:
            cfg.channels = shape[0]
    for key, value in overrides.items():
        if key == "root" and not named:  # a folder is read as it is named: data.root is the other side's
            continue
        if value is not None and (key in cfg or key == "train"):
            cfg[key] = value
    return cfg


def build(cfg: DictConfig) -> Data:
    data = instantiate(cfg)
    if not data.is_image:
        raise UserError(f"{data.name} holds points, not images: gantrain-eval scores images")
    return data


def fake_images(source: str, real: Data, overrides: DictConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 (N, C, H, W) fakes (and labels, when an .npz has them) from an .npz, a folder or a dataset."""
    if source.endswith(".npz"):
        if not Path(source).is_file():
            raise UserError(f"fake={source}: no such file")
        with np.load(source) as arrays:
            if "images" not in arrays:
                raise UserError(f"fake={source}: holds no 'images' array (write it with gantrain-sample)")
            images = torch.from_numpy(arrays["images"])
            labels = torch.from_numpy(arrays["labels"]).long() if "labels" in arrays else None
        return images, labels

    cfg = data_config(source, overrides, real.shape)
    if source in dataset_names() and "train" in cfg and overrides.get("train") is None:
        cfg.train = False  # real=mnist fake=mnist: the test split against the training split, the floor
    return real_images(build(cfg), 10**9)[0], None


def evaluator_settings(cfg: DictConfig) -> dict:
    """The Evaluator's settings a config gives (the Evaluator's own defaults for the others)."""
    return {key: cfg[key] for key in EVALUATOR_KEYS if key in cfg}


def score_run(cfg: DictConfig, sample_seed: int | None = None) -> tuple[dict, str]:
    """A run's generator scored on num_samples fresh samples (drawn with `sample_seed` when given)."""

    state = load_checkpoint(cfg.run)
    system = system_from_checkpoint(state, cfg.trust_checkpoint).to(resolve_device(cfg.device)).eval()
    saved = OmegaConf.create(state["config"]).data
    for key, value in cfg.data.items():
        if value is not None:
            saved[key] = value
    metrics = list(cfg.metrics) + (["accuracy"] if system.conditional else [])
    real = build(saved)
    evaluator = Evaluator(real, metrics, test_data=build_test_split(saved) if "tstr" in metrics else None,
                          **evaluator_settings(cfg))
    return evaluator(system, sample_seed=sample_seed), f"{state['path']} (step {state['step']})"


def score_files(cfg: DictConfig) -> tuple[dict, str]:
    real_cfg = data_config(cfg.real, cfg.data)
    real = build(real_cfg)
    evaluator = Evaluator(real, list(cfg.metrics), **evaluator_settings(cfg))
    fake, labels = fake_images(cfg.fake, real, cfg.data)
    return evaluator.score(fake, labels), f"{cfg.fake} ({len(fake)} images)"


def run(cfg: DictConfig) -> Path:
    if (cfg.run is None) == (cfg.real is None):
        raise UserError("say what to score: gantrain-eval run=<run dir|checkpoint.pt>, or real=<folder|dataset> "
                        "fake=<folder|.npz>")
    if cfg.real is not None and cfg.fake is None:
        raise UserError("real= needs fake=<folder|.npz|dataset> to compare against")
    values, what = score_run(cfg) if cfg.run is not None else score_files(cfg)
    print(table(values, what, values.extractor))
    out = Path(cfg.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    # the extractor's identity and quality travel with the numbers: scores of different extractors never mix
    out.write_text(json.dumps(dict(values) | {"extractor": values.extractor, "source": what,
                                               "gantrain_version": __version__}, indent=2) + "\n")
    log.info("metrics -> %s", out)
    return out


def table(values: dict, what: str, extractor: dict) -> str:
    """The scores under a header naming what was scored and by which extractor (with its quality)."""
    lines = [f"{what}, extractor={extractor['name']}", f"extractor: {describe(extractor)}", f"{'metric':<12}{'value':>14}"]
    lines += [f"{name:<12}{value:>14.6g}" for name, value in values.items()]
    return "\n".join(lines)
