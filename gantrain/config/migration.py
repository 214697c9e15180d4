"""Config keys and code that moved between releases: old spellings on a command line get a one-line error naming
the new key; configs saved in older checkpoints are rewritten to the new layout (keys and `_target_`s) on load."""

import copy

from gantrain.errors import UserError
from gantrain.moved import new_target

# old key -> (new key, release that moved it). Each group configures the object it builds (0.2.0): the EMA
# and DiffAugment are the GAN system's maths (model), SyncBatchNorm is the Trainer's DDP wrapping (trainer),
# and CycleGAN's block count belongs to the generator it sizes.
MOVED_KEYS = {
    "trainer.ema": ("model.ema", "0.2.0"),
    "trainer.ema_start": ("model.ema_start", "0.2.0"),
    "trainer.diffaugment": ("model.diffaugment", "0.2.0"),
    "model.sync_bn": ("trainer.sync_bn", "0.2.0"),
    "model.n_blocks": ("model.generator.n_blocks", "0.2.0"),
}
GAN_SYSTEM = "gantrain.systems.gan.GAN"  # the family that has model.ema / model.diffaugment
OFF_VALUES = (None, 0, False, "")


def explain_moved_key(key: str) -> str | None:
    """The one-line explanation for an old key, or None when `key` never moved."""
    key = key.lstrip("+~")
    if key not in MOVED_KEYS:
        return None
    new, release = MOVED_KEYS[key]
    return f"{key} is now {new} (moved in gantrain {release}): write {new}=... instead"


def check_no_moved_keys(overrides: list[str]) -> None:
    """Refuse old spellings among command-line overrides (`trainer.ema=0.999`) before Hydra sees them."""
    for override in overrides:
        moved = explain_moved_key(override.split("=", 1)[0])
        if moved:
            raise UserError(moved)


def migrate_config(config: dict) -> dict:
    """A saved config (plain dict) in the current layout; configs already in it come back unchanged."""
    config = moved_targets(copy.deepcopy(config))
    for old, (new, _) in MOVED_KEYS.items():
        old_group, old_key = old.split(".", 1)
        node = config.get(old_group)
        if not isinstance(node, dict) or old_key not in node:
            continue
        value = node.pop(old_key)
        if new.startswith("model.") and old_group == "trainer" and config.get("model", {}).get("_target_") != GAN_SYSTEM:
            if value in OFF_VALUES:  # the old trainer group carried these for every family; only GAN used them
                continue
        target = config
        *parents, leaf = new.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return config


def moved_targets(node):
    """Every `_target_` naming a module that moved (0.3.0: gantrain.losses -> gantrain.systems.losses) renamed."""
    if isinstance(node, dict):
        return {k: new_target(v) if k == "_target_" and isinstance(v, str) else moved_targets(v) for k, v in node.items()}
    if isinstance(node, list):
        return [moved_targets(v) for v in node]
    return node
