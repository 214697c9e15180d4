"""The schema layer: what every key of every command may hold, checked before anything is built or trained.

A schema is a dataclass whose fields are the keys of one config node: the annotation is the key's type, converted
and checked by OmegaConf's own nodes (so `true/yes/on/1` are booleans and `abc` is not), and a field made with
`rule()` also says what the value must satisfy (a range, a choice, an existing file). Nodes find their schema by
their `_target_` (config/group_schemas.py registers one for every target gantrain ships) or by their place
(the root's schema names `trainer` and `optim`); a node without one (a user's own model) is left alone, its children still checked.
The error is one line naming the key, the value and what is expected.
"""

import dataclasses
import re
import typing
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException
from omegaconf.nodes import AnyNode, BooleanNode, FloatNode, IntegerNode, StringNode

from gantrain.config.migration import explain_moved_key
from gantrain.errors import UserError, first_line
from gantrain.training.settings import AMP_DTYPES, TrainerConfig, parse_amp  # noqa: F401  (0.2's gantrain.trainer_config)

META_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")
TYPE_NAMES = {int: "an integer", float: "a number", bool: "a boolean (true/false, yes/no, on/off, 1/0)",
              str: "a string"}
BY_TARGET: dict[str, type] = {}  # `_target_` -> schema
OPEN = set()  # schemas that check the keys they declare and leave the others (the root: its groups)


def schema_for(*targets: str, open_keys: bool = False):
    """Class decorator: the schema of the nodes that name one of `targets`."""
    def register(cls: type) -> type:
        for target in targets:
            BY_TARGET[target] = cls
        if open_keys:
            OPEN.add(cls)
        return cls
    return register


# ------------------------------------------------------------------ checking a config
def validate(cfg: DictConfig, schema: type | None = None, path: str = "") -> None:
    """Check every node of `cfg` (and write OmegaConf's conversions back: `yes` -> True); UserError on the first
    problem. `schema`: the node's (the root's: a command's); the nodes below take the schema their parent's field
    names (the root's `trainer: TrainerConfig`) or the one registered for their `_target_`."""
    schema = schema or BY_TARGET.get(_target_of(cfg))
    if schema is not None:
        _check_fields(cfg, path, schema)
    nested = {f.name: f.type for f in dataclasses.fields(schema) if dataclasses.is_dataclass(f.type)} if schema else {}
    for key in cfg:
        if isinstance(key, str) and key != "hydra" and isinstance(cfg._get_node(key), DictConfig):
            validate(cfg[key], nested.get(key), f"{path}.{key}" if path else key)
        elif isinstance(key, str) and isinstance(cfg._get_node(key), ListConfig):  # a list of nodes (logger.loggers)
            for i, item in enumerate(cfg._get_node(key)):
                if isinstance(item, DictConfig):
                    validate(item, None, f"{path}.{key}.{i}" if path else f"{key}.{i}")


def _target_of(node: DictConfig) -> str | None:
    target = node._get_node("_target_") if "_target_" in node else None
    return None if target is None else str(target._value())


def _check_fields(node: DictConfig, path: str, schema: type) -> None:
    fields = {f.name: f for f in dataclasses.fields(schema)}
    values = {}
    for key in node:
        full = f"{path}.{key}" if path else str(key)
        if key in META_KEYS or key == "hydra":
            continue
        if key not in fields:
            if schema in OPEN:
                continue
            raise UserError(explain_moved_key(full) or f"{full} is not a key of {_what(node, path)}: it takes "
                            f"{', '.join(fields)}")
        if isinstance(node._get_node(key), DictConfig):
            continue  # a nested node (model.generator, trainer): checked by its own schema
        values[key] = _checked_value(node, key, full, fields[key])
    if dataclasses.fields(schema) and hasattr(schema, "__post_init__"):
        _check_together(schema, values, path)


def _what(node: DictConfig, path: str) -> str:
    target = _target_of(node)
    return target.rsplit(".", 1)[-1] if target else (path or "the config")


def _checked_value(node: DictConfig, key: str, full: str, field: dataclasses.Field) -> Any:
    raw = _read(node, key, full)
    try:
        value = convert(raw, field.type)
    except (OmegaConfBaseException, ValueError):
        raise UserError(f"{full}={shown(raw)}: expected {expected(field)}") from None
    holds = field.metadata.get("holds")
    if value is not None and holds is not None:
        try:
            ok = holds(value)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{full}={shown(raw)}: expected {expected(field)}")
    if not _same(value, raw) and not OmegaConf.is_interpolation(node, key):
        node[key] = value  # OmegaConf's conversion (yes -> True, "3" -> 3) is what the code receives
    return value


def _read(node: DictConfig, key: str, full: str) -> Any:
    """The value, interpolations resolved; a failing resolver is named with the keys its arguments came from."""
    try:
        value = node[key]
    except MissingMandatoryValue:  # `???` in a config: a value only the user can give
        hint = " (the folder that holds the data)" if full == "data.root" else ""
        raise UserError(f"{full} has no value: add {full}=...{hint} to the command line") from None
    except InterpolationResolutionError as err:
        sources = referenced_keys(str(node._get_node(key)._value()), full)
        values = ", ".join(f"{s}={shown(OmegaConf.select(node._get_root(), s, throw_on_resolution_failure=False))}"
                           for s in sources)
        why = re.sub(r"^\w+ raised while resolving interpolation: ", "", first_line(err))
        raise UserError(f"{values or full}: {why} (for {full})") from None
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value


def referenced_keys(interpolation: str, full: str) -> list[str]:
    """The absolute keys a `${...}` expression refers to (`${..lr}` in optim.generator.lr -> optim.lr)."""
    keys = []
    for ref in re.findall(r"\$\{([^${}:]+)\}", interpolation):
        if ref.startswith("."):
            dots = len(ref) - len(ref.lstrip("."))
            parent = full.split(".")[:-dots] if dots <= full.count(".") else []
            ref = ".".join(parent + [ref.lstrip(".")])
        keys.append(ref)
    return keys


def _check_together(schema: type, values: dict, path: str) -> None:
    """The schema's own checks of several keys at once (its __post_init__), with the values just converted."""
    try:
        schema(**values)
    except TypeError as err:  # a key the schema has but the dataclass cannot take: a bug in the schema
        raise UserError(f"{path}: {first_line(err)}") from None


def convert(value: Any, annotation: Any) -> Any:
    """`value` as OmegaConf converts it for a node of this type (ValidationError when it cannot)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    optional = origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and type(None) in args
    if optional:
        (annotation,) = [a for a in args if a is not type(None)]
        if value is None:
            return None
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, typing.List):
        if not isinstance(value, (list, tuple)):
            raise ValueError("not a list")
        return [convert(item, args[0] if args else Any) for item in value]
    if origin in (dict, typing.Dict):  # a node of its own (an item of logger.loggers): validate() checks its keys
        if not isinstance(value, dict):
            raise ValueError("not a mapping")
        return value
    node = {int: IntegerNode, float: FloatNode, bool: BooleanNode, str: StringNode}.get(annotation, AnyNode)
    if value is None and annotation is not Any:
        raise ValueError("null")
    if node is StringNode and isinstance(value, (list, dict)):
        raise ValueError("not a string")
    return node(value)._value()


def expected(field: dataclasses.Field) -> str:
    text = field.metadata.get("expected")
    annotation = field.type
    optional = type(None) in typing.get_args(annotation)
    base = next((a for a in typing.get_args(annotation) if a is not type(None)), annotation) if optional else annotation
    if text is None:
        text = "a list" if typing.get_origin(base) in (list, typing.List) else TYPE_NAMES.get(base, "a value")
    text = text.replace("{a number}", "an integer" if base is int else "a number")
    text = text.replace("{number}", "integer" if base is int else "number")
    return f"{text}, or null" if optional else text


def shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"  # -0.23, not -0.22999999999999998
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(shown(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------ the trainer group
def trainer_settings(node: DictConfig | dict | None = None, **overrides) -> TrainerConfig:
    """cfg.trainer (a composed node, or a plain dict from a saved run) as a checked TrainerConfig."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainerConfig), node or {}, overrides)
    except OmegaConfBaseException as err:
        raise UserError(explain_omegaconf_error(err, "trainer")) from None
    validate(merged, TrainerConfig, "trainer")
    return OmegaConf.to_object(merged)


def explain_omegaconf_error(err: OmegaConfBaseException, path: str = "") -> str:
    """One line for OmegaConf's refusal of a value (a typed node) or a key (a closed node), with what is expected."""
    key = getattr(err, "full_key", None) or getattr(err, "key", None)
    if not key:
        return f"{path or 'config'}: {first_line(err)}"
    full = f"{path}.{key}" if path and not str(key).startswith(f"{path}.") else str(key)
    moved = explain_moved_key(full)
    if moved or "not in" in str(err) or "Key" in first_line(err):
        return moved or f"{full}: {first_line(err)}"
    parent, _, leaf = full.rpartition(".")
    schema = {"trainer": TrainerConfig}.get(parent)  # the one group typed when Hydra composes
    field = next((f for f in dataclasses.fields(schema) if f.name == leaf), None) if schema else None
    value = getattr(err, "value", None)
    return f"{full}={shown(value)}: expected {expected(field)}" if field else f"{full}: {first_line(err)}"


def default_settings() -> dict:
    return {f.name: f.default for f in dataclasses.fields(TrainerConfig)}


ConfigStore.instance().store(group="trainer", name="schema", node=TrainerConfig)
