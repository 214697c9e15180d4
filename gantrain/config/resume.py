"""The config of a resumed run: the checkpoint's own, with this command line's key=value overrides on top."""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from gantrain.config.migration import migrate_config
from gantrain.errors import UserError


def resumed_config(cfg: DictConfig, saved: dict, saved_choices: dict, choices: dict, overrides: list) -> DictConfig:
    """`gantrain trainer.resume=RUN trainer.max_steps=40` continues RUN as it was configured: `saved` (the checkpoint's
    config) with every key=value of `overrides` (parsed command-line overrides) taken from `cfg`, this command line's
    composed config. Choosing a different group option (model=..., data=...) would not fit the saved weights and is
    refused; `choices` and `saved_choices` are this command line's and the run's group options."""
    merged = OmegaConf.create(migrate_config(saved))
    for o in overrides:
        key = o.key_or_group
        if key in choices:
            if saved_choices.get(key) != choices.get(key):
                raise UserError(
                    f"{key}={choices.get(key)}: the run being resumed used {key}={saved_choices.get(key)}; "
                    f"a resumed run keeps its config groups (drop {key}=... or start a new run)"
                )
        elif not o.is_delete():
            if key == "trainer.init_from":
                check_same_start(OmegaConf.select(cfg, key, default=None), OmegaConf.select(merged, key, default=None))
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key, default=None), force_add=True)
    merged.trainer.resume = cfg.trainer.resume
    return merged


def check_same_start(given: str | None, started: str | None) -> None:
    """trainer.init_from beside trainer.resume: a resumed run continues from its own checkpoint and loads nothing
    else, so only the start it already had may be repeated (the same command line with trainer.resume added)."""
    def where(path: str | None):
        return Path(str(path)).expanduser().resolve() if path else None

    if where(given) != where(started):
        was = f"started from {started}" if started else "started from scratch"
        raise UserError(f"trainer.init_from={given}: the run being resumed {was}, and a resumed run continues from its "
                        f"own checkpoint; drop trainer.init_from (or start a new run without trainer.resume)")
