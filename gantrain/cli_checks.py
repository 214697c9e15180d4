"""Part of the CLI boundary: check a command line against the real configs before Hydra starts a run.

Hydra would report a typo only after creating a run directory, as a multi-line message; this finds
unknown groups, options and keys (suggesting the closest valid name), bad values and an unwritable
output directory, and says each in one line.
"""

import difflib
import os
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf

from gantrain.errors import UserError


def check_command_line(argv: list[str], config_name: str = "config") -> None:
    """Raise UserError for the first problem of `gantrain <argv>`; flags like --help are left to Hydra."""
    args, _ = get_args_parser().parse_known_args(argv)
    modes = [flag for flag, on in (("--run", args.run), ("-m", args.multirun), ("--cfg", args.cfg), ("--info", args.info)) if on]
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)} do not go together: use one of them")
    if args.help or args.hydra_help or args.cfg or args.info or args.shell_completion or args.config_path or args.config_dir:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as err:
        raise UserError(f"cannot read the command line: {first_line(err)}") from None
    hydra_lines = [o.input_line for o in overrides if o.key_or_group.startswith("hydra")]
    overrides = [o for o in overrides if not o.key_or_group.startswith("hydra")]
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        check_groups(overrides, loader)
        groups = set(loader.list_groups(""))
        for line in representative_command_lines(overrides):
            chosen = compose_or_explain(config_name, [x for x in line if x.split("=")[0].lstrip("~+") in groups])
            check_keys(overrides, chosen, groups)  # before composing them: Hydra's own message is several lines
            cfg = compose_or_explain(config_name, line + hydra_lines)
            if not args.multirun:
                check_values(cfg)
                check_output_dir(cfg)


def first_line(err: Exception) -> str:
    return next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)


def closest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def values_of(o) -> list[str]:
    """Every value an override names: one, or each of a sweep's (a,b,c / range(...))."""
    if o.is_sweep_override():
        return list(o.sweep_string_iterator())
    return [o.get_value_element_as_str()] if o.value() is not None else []


def check_groups(overrides: list, loader) -> None:
    """group=option: the group exists and (each swept) option is one of its files."""
    groups = [g for g in loader.list_groups("") if not g.startswith("hydra")]
    for o in overrides:
        group = o.key_or_group
        if group not in groups:
            continue
        options = loader.get_group_options(group)
        for value in values_of(o):
            if value not in options and value != "null":
                raise UserError(f"{group}={value} is not an option of {group}{closest(value, options)}: "
                                f"choose one of {', '.join(options)}")


def representative_command_lines(overrides: list) -> list[list[str]]:
    """One override list per swept value (others at their first value), so every value gets composed."""
    first = [f"{o.get_key_element()}={values_of(o)[0]}" if o.is_sweep_override() else o.input_line for o in overrides]
    lines = [first]
    for i, o in enumerate(overrides):
        for value in values_of(o)[1:] if o.is_sweep_override() else []:
            lines.append(first[:i] + [f"{o.get_key_element()}={value}"] + first[i + 1:])
    return lines


def compose_or_explain(config_name: str, overrides: list[str]) -> DictConfig:
    try:
        return compose(config_name, overrides=overrides, return_hydra_config=True)
    except HydraException as err:
        raise UserError(f"{first_line(err)} (overrides: {' '.join(overrides)})") from None


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        node = cfg._get_node(key)
        keys.append(path)
        if isinstance(node, DictConfig):
            keys += leaf_keys(node, path + ".")
    return keys


def check_keys(overrides: list, cfg: DictConfig, groups: set[str]) -> None:
    """key=value overrides name keys that exist (struct mode); `+key=value` adds one on purpose."""
    job = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    known = leaf_keys(job)
    for o in overrides:
        key = o.key_or_group
        if o.is_add() or o.is_force_add() or o.is_delete() or key in known or key in groups:
            continue
        if key not in known:
            raise UserError(f"{key} is not a config key{closest(key, known)}; `gantrain --cfg job` lists them "
                            f"(to add a new key on purpose, write +{key}=...)")


def check_values(cfg: DictConfig) -> None:
    """Values the run would only trip over later: sizes, steps and learning rates must be positive."""
    from gantrain.build import check_config

    check_config(cfg)


def check_output_dir(cfg: DictConfig) -> None:
    """The run directory can be created and written to."""
    try:
        run_dir = Path(str(OmegaConf.select(cfg, "hydra.run.dir"))).expanduser().absolute()
    except Exception:  # an interpolation only Hydra's runtime can resolve: leave it to Hydra
        return
    parent = next(p for p in (run_dir, *run_dir.parents) if p.exists())
    try:  # the nearest existing folder must take a new entry (root ignores permission bits: really try)
        if not parent.is_dir():
            raise NotADirectoryError(20, "not a folder")
        probe = parent / f".gantrain-write-test-{os.getpid()}"
        probe.mkdir()
        probe.rmdir()
    except OSError as err:
        raise UserError(f"cannot create the run directory {run_dir} ({parent}: {err.strerror}): "
                        f"run from a writable folder or set hydra.run.dir=...") from None
