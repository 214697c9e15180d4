"""One `gantrain` run, as Hydra calls it for each job: resume or sweep continuation, the config it really uses,
then the Trainer; a run that fails before training still leaves a summary.json saying so."""

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from gantrain.cli.exits import is_multirun
from gantrain.cli.sweeps import continue_sweep_job
from gantrain.config.build import build_trainer
from gantrain.config.migration import migrate_config
from gantrain.config.resume import resumed_config
from gantrain.config.trust import check_saved_config, targets_in
from gantrain.device import device_for_sweep_job
from gantrain.errors import first_line
from gantrain.moved import new_target
from gantrain.search import SWEEPER
from gantrain.training import distributed
from gantrain.training.checkpoint import check_resumable, load_checkpoint
from gantrain.training.summary import FILE, write_summary

log = logging.getLogger("gantrain")


def train_job(cfg: DictConfig) -> float | None:
    """One run; returns its objective (the best value of trainer.best_metric, None without evaluations)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        if is_multirun():  # a sweep run again: finished jobs answer from their summary, interrupted ones resume
            recorded = continue_sweep_job(cfg, run_dir)
            if recorded is not None:
                return recorded["best"]["value"] if recorded.get("best") else None
            if not distributed.launched_by_torchrun():  # parallel jobs on a multi-GPU machine: one GPU each
                cfg.trainer.device = device_for_sweep_job(cfg.trainer.device, HydraConfig.get().job.num)
        cfg, choices = with_resumed_config(cfg)
        if distributed.is_main():
            OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # the config this run really uses
        meta = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": choices,
                "overrides": [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.")]}
        log.info("run directory: %s", run_dir)
        return build_trainer(cfg, run_dir, meta=meta, hparams=hparams_of(cfg), report=search_report(run_dir)).fit()
    except Exception as err:
        if distributed.is_main() and not (run_dir / FILE).exists():
            write_summary(run_dir, {"status": "failed", "reason": first_line(err), "steps": 0, "best": None,
                                    "overrides": list(HydraConfig.get().overrides.task)})
        raise


def search_report(run_dir: Path):
    """A search trial's report callback (its evaluations go to the study, whose pruner may stop it); None otherwise."""
    sweeper = HydraConfig.get().sweeper
    if not (is_multirun() and sweeper.get("_target_") == SWEEPER):
        return None
    from gantrain.search.pruning import trial_report  # Optuna: imported by search trials only

    return trial_report(sweeper, run_dir)


def with_resumed_config(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """The config and group choices to train with: this command line's, or (trainer.resume) the checkpoint's with
    this command line's key=value overrides on top. The saved config's targets must be gantrain's or named here."""
    choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    if not cfg.trainer.resume:
        return cfg, choices
    saved = check_resumable(load_checkpoint(cfg.trainer.resume))
    check_saved_config(migrate_config(saved.get("config", {})), f"checkpoint {saved['path']}", cfg.trust_checkpoint,
                       also_allowed=[new_target(target) for _, target in targets_in(cfg)])
    merged = resumed_config(cfg, saved.get("config", {}), saved.get("choices", {}),
                            HydraConfig.get().runtime.choices, user_overrides())
    return merged, saved.get("choices", choices)


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
