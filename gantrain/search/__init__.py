"""Hyperparameter search: the Optuna study its workers share (study.py), the search space (space.py), the worker loop
behind hydra/sweeper=search (sweeper.py), a trial's pruning (pruning.py), and gantrain-report's ranking (report.py)."""

from gantrain.moved import attribute_of_moved_module

SWEEPER = "hydra_plugins.gantrain_search.SearchSweeper"  # the _target_ of configs/hydra/sweeper/search.yaml


def __getattr__(name: str):  # 0.2's gantrain.search module: SeededTPESampler
    return attribute_of_moved_module(__name__, name)
