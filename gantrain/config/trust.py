"""What code a config read from a checkpoint may name: the targets gantrain's own configs name.

A checkpoint is read with `weights_only=True`, but its saved config is instantiated when the file is
sampled, evaluated, exported or resumed, so each `_target_` in it is code chosen by whoever wrote the
file. Only targets that gantrain ships (or that this very command line chose) are built without the
user's explicit `trust_checkpoint=true`.
"""

import functools
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from gantrain.errors import UserError


def targets_in(node, path: str = "") -> Iterator[tuple[str, str]]:
    """(key path, target) of every `_target_` anywhere in a nested dict/list config."""
    if isinstance(node, (DictConfig, ListConfig)):
        node = OmegaConf.to_container(node, resolve=False)
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if key == "_target_":
                yield where, str(value)
            else:
                yield from targets_in(value, where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from targets_in(value, f"{path}[{i}]")


@functools.cache
def shipped_targets() -> frozenset[str]:
    """Every `_target_` named by a YAML file of gantrain's config groups. Not configs/hydra/'s sweepers and pruners
    (Optuna's): Hydra's own settings are never part of the config a checkpoint saves."""
    root = Path(str(files("gantrain.configs")))
    return frozenset(target for p in root.rglob("*.yaml") if p.relative_to(root).parts[0] != "hydra"
                     for _, target in targets_in(OmegaConf.load(p)))


def check_saved_config(config, source: str, trust: bool = False, also_allowed=()) -> None:
    """Refuse, before anything is built, a saved config that names code gantrain does not ship.

    `also_allowed`: targets the user's own command line names (a model added through hydra.searchpath
    that is being resumed with the same command line)."""
    if trust:
        return
    allowed = shipped_targets() | set(also_allowed)
    for where, target in targets_in(config):
        if target not in allowed:
            raise UserError(
                f"{source}: its saved config names {target} (at {where}), which is not part of gantrain; a "
                f"checkpoint could run any code its config names, so it is refused. If you trust whoever wrote "
                f"the file (e.g. it is your own model added through hydra.searchpath), add trust_checkpoint=true"
            )
