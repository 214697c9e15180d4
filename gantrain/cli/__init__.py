"""The console commands and what only they do: the command-line pre-check, exit statuses, sweep callbacks and
torchrun's arguments. The only place that maps errors to exit statuses."""

from gantrain.cli.commands import (  # noqa: F401  (the entry points)
    evaluate, export, import_official, report, sample, search, train,
)
from gantrain.moved import attribute_of_moved_module


def __getattr__(name: str):  # 0.2's gantrain.cli module had more: SweepSummary, resumed_config, ...
    return attribute_of_moved_module(__name__, name)
