"""Modules that moved in 0.3.0, when the package was grouped by role: their old import paths keep working
through 0.3.x with a DeprecationWarning, and saved configs naming old `_target_`s are migrated on load.

This table is the one place that knows the old paths; CHANGELOG.md lists the same moves for readers.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED_MODULES = {  # old module -> new module
    "gantrain.ada": "gantrain.systems.ada",
    "gantrain.augment": "gantrain.systems.diffaugment",
    "gantrain.build": "gantrain.config.build",
    "gantrain.checkpoint": "gantrain.training.checkpoint",
    "gantrain.cli_checks": "gantrain.cli.checks",
    "gantrain.cli_configs": "gantrain.cli.configs",
    "gantrain.config_migration": "gantrain.config.migration",
    "gantrain.data.cache": "gantrain.data.decoded",
    "gantrain.distributed": "gantrain.training.distributed",
    "gantrain.ema": "gantrain.systems.ema",
    "gantrain.export": "gantrain.generate.export",
    "gantrain.latents": "gantrain.systems.latents",
    "gantrain.loggers": "gantrain.training.loggers",
    "gantrain.losses": "gantrain.systems.losses",
    "gantrain.metrics.command": "gantrain.metrics.scoring",
    "gantrain.model_card": "gantrain.generate.model_card",
    "gantrain.objective": "gantrain.training.objective",
    "gantrain.penalties": "gantrain.systems.penalties",
    "gantrain.pictures": "gantrain.generate.pictures",
    "gantrain.pixels": "gantrain.data.pixels",
    "gantrain.report": "gantrain.search.report",
    "gantrain.safety": "gantrain.training.safety",
    "gantrain.sampling": "gantrain.generate.sampling",
    "gantrain.summary": "gantrain.training.summary",
    "gantrain.trainer": "gantrain.training.trainer",
    "gantrain.trainer_config": "gantrain.config.schema",
    "gantrain.translate": "gantrain.generate.translate",
    "gantrain.trust": "gantrain.config.trust",
    "gantrain.walks": "gantrain.generate.walks",
}
# modules that became packages of the same name: where their old attributes live now
MOVED_ATTRIBUTES = {
    "gantrain.cli": {
        "SweepSummary": "gantrain.cli.sweeps", "mark_failed": "gantrain.cli.sweeps", "print_top_runs": "gantrain.cli.sweeps",
        "continue_sweep_job": "gantrain.cli.sweeps", "EXIT_STATUS": "gantrain.cli.exits",
        "reports_user_errors": "gantrain.cli.exits", "prog_name": "gantrain.cli.exits", "hparams_of": "gantrain.cli.runs",
        "user_overrides": "gantrain.cli.runs", "torchrun_overrides": "gantrain.cli.torchrun",
        "resumed_config": "gantrain.config.resume", "run_dir_of": "gantrain.training.checkpoint",
    },
    "gantrain.search": {"SeededTPESampler": "gantrain.search.study"},  # ResumableStudy: the search's sweeper does its job
}


def new_target(target: str) -> str:
    """A `_target_` (module.attribute) in today's layout: `gantrain.losses.BCE` -> `gantrain.systems.losses.BCE`."""
    module, _, name = target.rpartition(".")
    if module in MOVED_MODULES:
        return f"{MOVED_MODULES[module]}.{name}"
    if name in MOVED_ATTRIBUTES.get(module, {}):
        return f"{MOVED_ATTRIBUTES[module][name]}.{name}"
    return target


def warn_moved(old: str, new: str) -> None:
    warnings.warn(f"{old} moved to {new} in gantrain 0.3.0; the old path goes away in 0.4", DeprecationWarning,
                  stacklevel=3)


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old path as its new module: the same module object, so classes and state are shared."""

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED_MODULES else None

    def create_module(self, spec):
        return None  # a placeholder module; exec_module puts the real one in its place

    def exec_module(self, module) -> None:
        old, new = module.__name__, MOVED_MODULES[module.__name__]
        warn_moved(old, new)
        # the import system returns whatever sys.modules holds for the name once exec_module is done
        sys.modules[old] = importlib.import_module(new)


def install() -> None:
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())


def attribute_of_moved_module(package: str, name: str):
    """Module-level __getattr__ of a package that replaced a module of its name (gantrain.cli, gantrain.search)."""
    if name not in MOVED_ATTRIBUTES[package]:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    new = MOVED_ATTRIBUTES[package][name]
    warn_moved(f"{package}.{name}", f"{new}.{name}")
    return getattr(importlib.import_module(new), name)
