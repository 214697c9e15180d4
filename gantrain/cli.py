"""Console entry points (`gantrain`, `gantrain-sample`): thin Hydra wrappers around build and Trainer."""

import functools
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gantrain.errors import UserError

log = logging.getLogger("gantrain")
CONFIG_PATH = "pkg://gantrain.configs"


# ------------------------------------------------------------------ run directories on resume
def run_dir_of(resume) -> Path | None:
    """The run directory a `trainer.resume` value belongs to, or None for a checkpoint outside any run."""
    if not resume:
        return None
    p = Path(str(resume)).expanduser()
    if p.is_dir():
        return p if (p / "checkpoints").is_dir() else None
    if p.parent.name == "checkpoints":
        return p.parent.parent
    return None


def _resolver_run_dir(resume, default: str) -> str:
    run = run_dir_of(resume)
    return str(run) if run else default


def _resolver_hydra_subdir(resume, stamp: str) -> str:
    # a resumed run keeps its original .hydra/ and records this invocation beside it
    return f".hydra/resume-{stamp}" if run_dir_of(resume) else ".hydra"


OmegaConf.register_new_resolver("gantrain_run_dir", _resolver_run_dir, replace=True)
OmegaConf.register_new_resolver("gantrain_hydra_subdir", _resolver_hydra_subdir, replace=True)


# ------------------------------------------------------------------ errors
def reports_user_errors(task):
    """A UserError becomes one line on stderr and exit status 2 (HYDRA_FULL_ERROR=1 shows the trace)."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except UserError as err:
            import os

            if os.environ.get("HYDRA_FULL_ERROR") == "1" or _is_multirun():
                raise  # a sweep records the failure and goes on with the other jobs
            print(f"{Path(sys.argv[0]).name}: error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


# ------------------------------------------------------------------ overrides
def user_overrides() -> list:
    """The command line's overrides (hydra.* excluded), parsed."""
    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [o for o in parsed if not o.key_or_group.startswith("hydra")]


def hparams_of(cfg: DictConfig) -> dict:
    """The settings that tell runs apart in TensorBoard: the groups chosen and every value overridden."""
    choices = HydraConfig.get().runtime.choices
    params = {g: choices.get(g) for g in ("experiment", "model", "data", "loss", "optim", "trainer") if choices.get(g)}
    params["seed"] = cfg.seed
    for o in user_overrides():
        key = o.key_or_group
        params[key] = choices.get(key) if key in choices else OmegaConf.select(cfg, key, default=None)
    return params


def resumed_config(cfg: DictConfig, saved: dict, saved_choices: dict) -> DictConfig:
    """The checkpoint's config with this command line's key=value overrides on top.

    `gantrain trainer.resume=RUN trainer.max_steps=40` continues RUN as it was configured; choosing a
    different group option (model=..., data=...) would not fit the saved weights and is refused.
    """
    merged = OmegaConf.create(saved)
    choices = HydraConfig.get().runtime.choices
    for o in user_overrides():
        key = o.key_or_group
        if key in choices:
            if saved_choices.get(key) != choices.get(key):
                raise UserError(
                    f"{key}={choices.get(key)}: the run being resumed used {key}={saved_choices.get(key)}; "
                    f"a resumed run keeps its config groups (drop {key}=... or start a new run)"
                )
        elif not o.is_delete():
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key, default=None), force_add=True)
    merged.trainer.resume = cfg.trainer.resume
    return merged


# ------------------------------------------------------------------ gantrain
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
@reports_user_errors
def _train(cfg: DictConfig) -> None:
    from gantrain.build import build_trainer
    from gantrain.checkpoint import load_checkpoint

    choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    if cfg.trainer.resume:
        saved = load_checkpoint(cfg.trainer.resume)
        cfg = resumed_config(cfg, saved.get("config", {}), saved.get("choices", {}))
        choices = saved.get("choices", choices)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # the config this run really uses
    meta = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": choices}
    log.info("run directory: %s", run_dir)
    build_trainer(cfg, run_dir, meta=meta, hparams=hparams_of(cfg)).fit()


def train() -> None:
    """`gantrain [group=option ...] [key=value ...]`: train a GAN."""
    _train()


# ------------------------------------------------------------------ gantrain-sample
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="sample")
@reports_user_errors
def _sample(cfg: DictConfig) -> None:
    from gantrain.sampling import sample_to_files

    if cfg.run is None:
        raise UserError("say which run to sample from: gantrain-sample run=outputs/DATE/TIME (or a .pt file)")
    for path in sample_to_files(cfg.run, cfg.n, cfg.out, cfg.batch_size, cfg.device, cfg.seed):
        print(path)


def sample() -> None:
    """`gantrain-sample run=<run dir|.pt> n=64 out=samples.npz`: draw samples from a trained generator."""
    _sample()
