"""Dataclass fields that say what a config value must satisfy beyond its type (a range, a choice, an existing path):
the vocabulary of gantrain's config schemas (gantrain/config/schema.py checks them; TrainerConfig uses them too)."""

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any


def rule(default: Any, holds: Callable[[Any], bool], expected: str) -> Any:
    """A schema field: its default, and what a (non-null) value must satisfy beyond its type."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return dataclasses.field(metadata={"holds": holds, "expected": expected}, **factory)


def positive(default: Any) -> Any:
    return rule(default, lambda v: v > 0, "a positive {number}")


def at_least(default: Any, low: float) -> Any:
    return rule(default, lambda v: v >= low, f"{{a number}} >= {low:g}")


def between(default: Any, low: float, high: float, high_included: bool = False) -> Any:
    holds = (lambda v: low <= v <= high) if high_included else (lambda v: low <= v < high)
    return rule(default, holds, f"a number in [{low:g}, {high:g}{']' if high_included else ')'}")


def one_of(default: Any, choices) -> Any:
    choices = tuple(choices)
    return rule(default, lambda v: v in choices, "one of " + ", ".join(map(str, choices)))


def all_of(default: list, choices) -> Any:
    choices = tuple(choices)
    return rule(default, lambda v: bool(v) and set(v) <= set(choices), "a list of " + ", ".join(choices))


def existing(default: Any, what: str = "folder") -> Any:
    """A path that must exist (a folder, a file, or either) when given."""
    test = {"folder": Path.is_dir, "file": Path.is_file, "path": Path.exists}[what]
    return rule(default, lambda v: test(Path(str(v)).expanduser()), f"an existing {what}")


def auto_or_bool(default: Any) -> Any:
    return rule(default, lambda v: str(v).lower() in ("auto", "true", "false"), "auto, true or false")


def auto_or_positive(default: Any) -> Any:
    return rule(default, lambda v: v == "auto" or (type(v) is int and v > 0), "auto or a positive integer")
