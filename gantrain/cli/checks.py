"""Part of the CLI boundary: compose a command line with Hydra itself before a run starts, and say
in one line what is wrong with it.

Hydra decides what a command line means (search paths, `+group=option`, groups added by plugins);
this module only runs that composition early, before Hydra creates a run directory, and turns its
multi-line errors into one line with the closest valid name. It keeps no list of its own.
"""

import argparse
import difflib
import importlib.util
import os
import re
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.initialize import get_gh_backup, restore_gh_from_backup
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gantrain.config.build import check_config
from gantrain.config.migration import explain_moved_key
from gantrain.config.schema import explain_omegaconf_error
from gantrain.errors import UserError
from gantrain.search import SWEEPER


def hydra_flags() -> argparse.ArgumentParser:
    """The command-line flags of a @hydra.main program (Hydra 1.3's documented set), so the overrides
    can be told apart from them; tests compare it with Hydra's own parser."""
    parser = argparse.ArgumentParser(add_help=False)
    for names in (("--help", "-h"), ("--hydra-help",), ("--version",), ("--resolve",), ("--run", "-r"),
                  ("--multirun", "-m"), ("--shell-completion", "-sc")):
        parser.add_argument(*names, action="store_true")
    for names in (("--cfg", "-c"), ("--package", "-p"), ("--config-path", "-cp"), ("--config-name", "-cn"),
                  ("--config-dir", "-cd"), ("--experimental-rerun",)):
        parser.add_argument(*names)
    parser.add_argument("--info", "-i", nargs="?", const="all")
    parser.add_argument("overrides", nargs="*")
    return parser


def check_command_line(argv: list[str], config_name: str = "config") -> None:
    """Raise UserError for the first problem of `gantrain <argv>`; informational flags are left to Hydra."""
    args, _ = hydra_flags().parse_known_args(argv)
    modes = [flag for flag, on in (("--run", args.run), ("-m", args.multirun), ("--cfg", args.cfg), ("--info", args.info)) if on]
    if len(modes) > 1:
        raise UserError(f"{' and '.join(modes)} do not go together: use one of them")
    informational = (args.help, args.hydra_help, args.version, args.cfg, args.info, args.shell_completion)
    if any(informational) or args.config_path or args.config_dir or args.config_name or args.experimental_rerun:
        return
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except HydraException as err:
        raise UserError(f"cannot read the command line: {first_line(err)}") from None
    searched = any(o.is_sweep_override() for o in overrides)  # a search space on the command line
    overrides = [o for o in overrides if composable(o)]
    for o in overrides:  # a key an earlier release had elsewhere (trainer.ema): name its new place
        if moved := explain_moved_key(o.key_or_group):
            raise UserError(moved)
    chosen = {o.key_or_group: values_of(o) for o in overrides}
    if "debug" in chosen.get("trainer", []) and set(chosen.get("debug", [])) - {"none"}:
        raise UserError("trainer=debug and debug=default say the same thing: drop one of them")
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for line in representative_command_lines(overrides):
            cfg = compose_or_explain(config_name, line, overrides, loader)
            if args.multirun:
                check_search(cfg, searched)
            else:
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


def composable(o) -> bool:
    """A value, or a sweep whose values can be listed; a continuous interval(...) is a sweeper's to sample."""
    return not o.is_interval_sweep()


def representative_command_lines(overrides: list) -> list[list[str]]:
    """One override list per swept value (others at their first value), so every value gets composed."""
    first = [f"{o.get_key_element()}={values_of(o)[0]}" if o.is_sweep_override() else o.input_line for o in overrides]
    lines = [first]
    for i, o in enumerate(overrides):
        for value in values_of(o)[1:] if o.is_sweep_override() else []:
            lines.append(first[:i] + [f"{o.get_key_element()}={value}"] + first[i + 1:])
    return lines


def compose_or_explain(config_name: str, line: list[str], overrides: list, loader) -> DictConfig:
    """Hydra's composition of one command line; when it fails, one line saying which override is wrong."""
    try:
        return compose(config_name, overrides=line, return_hydra_config=True)
    except HydraException as err:
        full_key = re.search(r"full_key: (\S+)", str(err))  # a key set by a config file (a preset of one's own)
        if full_key and (moved := explain_moved_key(full_key.group(1))):
            raise UserError(f"{moved} (in a config file of this command line)") from None
        hydra_lines = [x for x in line if x.lstrip("+~").startswith("hydra.")]  # search paths decide the groups
        explain_group_options(overrides, config_name, hydra_lines, loader)
        explain_unknown_keys(overrides, config_name, line, hydra_lines, loader)
        merging = re.match(r"Error merging override (\S+)", first_line(err))
        if merging and isinstance(err.__cause__, OmegaConfBaseException):  # a typed key (trainer.*) refused the value
            raise UserError(explain_omegaconf_error(err.__cause__)) from None
        raise UserError(f"{first_line(err)} (overrides: {' '.join(line)})") from None


def group_options(loader, group: str, config_name: str, hydra_lines: list[str]) -> list[str]:
    """The options Hydra sees for `group` (with this command line's search path), [] if it is no group."""
    try:
        return list(loader.get_group_options(group, config_name=config_name, overrides=hydra_lines))
    except HydraException:
        return []


def explain_group_options(overrides: list, config_name: str, hydra_lines: list[str], loader) -> None:
    """group=option naming an option the group does not have: the closest one and the list."""
    for o in overrides:
        if o.is_delete() or o.key_or_group.startswith("hydra."):
            continue
        options = group_options(loader, o.key_or_group, config_name, hydra_lines)
        for value in values_of(o) if options else []:
            if value not in options and value != "null":
                raise UserError(f"{o.key_or_group}={value} is not an option of {o.key_or_group}{closest(value, options)}: "
                                f"choose one of {', '.join(options)}")


def explain_unknown_keys(overrides: list, config_name: str, line: list[str], hydra_lines: list[str], loader) -> None:
    """key=value naming a key the composed config does not have: the closest key, and how to add one."""
    groups = [x for x, o in zip(line, overrides) if o.is_add() or o.is_delete()
              or group_options(loader, o.key_or_group, config_name, hydra_lines)]
    try:
        cfg = compose(config_name, overrides=groups + hydra_lines)
    except HydraException:
        return  # the groups themselves do not compose: Hydra's own message says why
    known = leaf_keys(cfg)
    for o in overrides:
        key = o.key_or_group
        if not (o.is_add() or o.is_force_add() or o.is_delete() or key.startswith("hydra.") or key in known
                or group_options(loader, key, config_name, hydra_lines)):
            raise UserError(f"{key} is not a config key{closest(key, known)}; `gantrain --cfg job` lists them "
                            f"(to add a new key on purpose, write +{key}=...)")


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    keys = []
    for key in cfg.keys():
        path = f"{prefix}{key}"
        node = cfg._get_node(key)
        keys.append(path)
        if isinstance(node, DictConfig):
            keys += leaf_keys(node, path + ".")
    return keys


def compose_training_config(argv: list[str]) -> DictConfig:
    """The training config `gantrain <argv>` composes (no hydra node), a wrong override reported in one line; its
    values are the caller's to check. Callable from inside another command's Hydra (gantrain-import), which is set
    aside meanwhile and put back after."""
    saved = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        overrides = OverridesParser.create().parse_overrides(argv)
        with initialize_config_module("gantrain.configs", version_base="1.3"):
            cfg = compose_or_explain("config", argv, overrides, GlobalHydra.instance().config_loader())
    finally:
        restore_gh_from_backup(saved)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def check_values(cfg: DictConfig) -> None:
    """Every value of the composed config against its schema (metrics.* too, though evaluations come later)."""
    check_config(cfg)


def check_search(cfg: DictConfig, searched: bool = True) -> None:
    """A search (hydra/sweeper=search) needs Optuna, a space to search, and each run must return a value: the best of
    its evaluations."""
    if OmegaConf.select(cfg, "hydra.sweeper._target_", default="") != SWEEPER:
        return
    if importlib.util.find_spec("optuna") is None:
        raise UserError("a search needs Optuna: pip install \"gantrain[sweep]\"")
    if not OmegaConf.select(cfg, "trainer.eval_every", default=None):
        raise UserError(f"a search optimises trainer.best_metric ({cfg.trainer.best_metric}), which needs evaluations: "
                        f"add trainer.eval_every=N (and metrics.num_samples=... to keep them quick)")
    if not searched and not cfg.hydra.sweeper.params:
        raise UserError("the search has nothing to search: give a space such as 'optim.lr=tag(log, interval(1e-5, "
                        "1e-3))' or 'loss=choice(bce, lsgan)', or use hydra/sweeper=gan_search")


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
