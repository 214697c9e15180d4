"""Hyperparameter search: the Optuna study behind hydra/sweeper=search, and gantrain-report's ranking of runs."""

from gantrain.moved import attribute_of_moved_module


def __getattr__(name: str):  # 0.2's gantrain.search module: SeededTPESampler, ResumableStudy
    return attribute_of_moved_module(__name__, name)
