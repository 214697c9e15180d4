"""The config groups' schemas, registered with Hydra's ConfigStore: a value of the wrong type or a key the object does
not take is refused when the command line is composed, with the key named.

configs/trainer/default.yaml starts from `trainer/schema` (`defaults: [schema, _self_]`).
"""

from dataclasses import fields

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gantrain.config.migration import explain_moved_key
from gantrain.errors import UserError, first_line
from gantrain.training.settings import AMP_DTYPES, TrainerConfig, parse_amp  # noqa: F401  (0.2's gantrain.trainer_config)


def trainer_settings(node: DictConfig | dict | None = None, **overrides) -> TrainerConfig:
    """cfg.trainer (a composed node, or a plain dict from a saved run) as a checked TrainerConfig."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainerConfig), node or {}, overrides)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as err:
        key = f"trainer.{err.key}" if getattr(err, "key", None) else "trainer"
        raise UserError(explain_moved_key(key) or f"{key}: {first_line(err)}") from None


def default_settings() -> dict:
    return {f.name: f.default for f in fields(TrainerConfig)}


ConfigStore.instance().store(group="trainer", name="schema", node=TrainerConfig)
