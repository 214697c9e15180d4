"""Every leaf key of every command's composed config, set to values its schema does not choose, is refused in one
line before anything is built (or the allowlist below says why that value is valid); every shipped preset's own
values are accepted. Keys are read from the composed configs, so a key added later is probed without editing this.

Probes, by what the composed value is: `abc` for every key, `-3` for numbers, `[1]` for scalars, `1` for lists,
`fdi` for strings (enumerations among them). A probe is applied as Hydra applies an override (a typed node refuses
it at once, which the command line reports in one line too), then the command line's own validation runs.
"""

import re
import time

import pytest
from hydra import compose, initialize_config_module
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gantrain.cli.checks import check_values
from gantrain.cli.schemas import EvalCommand, ExportCommand, ImportCommand, SampleCommand
from gantrain.config.schema import META_KEYS, explain_omegaconf_error, validate
from gantrain.errors import UserError
from support import REPO

PROBES = {"abc": "abc", "-3": -3, "[1]": [1], "1": 1, "fdi": "fdi"}  # as Hydra parses each override value
PRESETS = [None] + sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))
COMMANDS = {"gantrain-sample": ("sample", SampleCommand), "gantrain-eval": ("eval", EvalCommand),
            "gantrain-export": ("export", ExportCommand), "gantrain-import": ("import", ImportCommand)}

# command:key (a regular expression) -> {probe: why that value is valid}
ALLOWED = {
    r"gantrain:data\.root": {p: "a folder name: torchvision sets look for their files there when the data is read, "
                                "and data.download=true creates it" for p in ("abc", "fdi")},
    r"gantrain-(sample|export):out": {"abc": "any file name (the extension is checked against the format when the "
                                             "file is written)"},
    r"gantrain-eval:out": {p: "any file name for the scores" for p in ("abc", "fdi")},
    r"gantrain-import:out": {"abc": "any folder name (made when it does not exist)"},
    r"gantrain-sample:tensorboard": {"abc": "a log folder (made when it does not exist)"},
}


def leaves(cfg: DictConfig, prefix: str = ""):
    """(key, resolved value, target of its node) of every leaf, hydra's settings and _target_-like keys left out."""
    target = cfg.get("_target_") if "_target_" in cfg else None
    for key in cfg:
        full = f"{prefix}{key}"
        if key in META_KEYS or full == "hydra":
            continue
        node = cfg._get_node(key)
        if isinstance(node, DictConfig):
            yield from leaves(cfg[key], full + ".")
        else:
            value = cfg[key]
            yield full, OmegaConf.to_container(value) if isinstance(value, ListConfig) else value, target


def probes_for(value) -> list[str]:
    if isinstance(value, list):
        return ["abc", "1"]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return ["abc", "-3", "[1]"]
    if isinstance(value, str):
        return ["abc", "fdi", "[1]"]
    return ["abc", "[1]"]  # booleans and nulls


def outcome(cfg: DictConfig, key: str, value, check) -> str | None:
    """The one-line error `key=value` gets (None: accepted), the config left as it was."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    before = node._get_node(leaf)._value()  # an interpolation stays one
    try:
        node[leaf] = value
    except OmegaConfBaseException as err:  # a typed node refuses it, as in Hydra's composition
        return explain_omegaconf_error(err)
    try:
        check(cfg)
        return None
    except UserError as err:
        return str(err)
    finally:
        node[leaf] = before


def allowed(command: str, key: str, probe: str) -> str | None:
    return next((why[probe] for pattern, why in ALLOWED.items()
                 if re.fullmatch(pattern, f"{command}:{key}") and probe in why), None)


def run_cases(command: str, cfg: DictConfig, check, seen: set, used: set) -> list[str]:
    """Probe every leaf not probed before in a node of the same kind; the problems found (`used`: the allowlist
    entries that accepted a probe)."""
    problems = []
    for key, value, target in list(leaves(cfg)):
        for probe in probes_for(value):
            if (command, key, target, probe) in seen:
                continue
            seen.add((command, key, target, probe))
            error = outcome(cfg, key, PROBES[probe], check)
            reason = allowed(command, key, probe)
            if error is None and reason is not None:
                used.add((next(p for p in ALLOWED if re.fullmatch(p, f"{command}:{key}")), probe))
            if error is None and reason is None:
                problems.append(f"{command} {key}={probe} was accepted")
            elif error is not None and ("\n" in error.strip() or key.split(".")[-1] not in error):
                problems.append(f"{command} {key}={probe}: not one line naming the key: {error!r}")
    return problems


@pytest.fixture(scope="module")
def composed(tiny_run, tmp_path_factory) -> dict:
    """Every preset's config (evaluations on; data.root, where it has one, an existing folder, as a user gives it)
    and the three commands' configs on a trained run, composed once."""
    configs, folder = {}, str(tmp_path_factory.mktemp("data"))
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        for preset in PRESETS:
            overrides = ["trainer.eval_every=100"] + ([f"experiment={preset}"] if preset else [])
            cfg = compose("config", overrides=overrides)
            if "root" in cfg.data.keys():  # (`in` alone is False for a `???` value)
                cfg.data.root = folder
            configs[("gantrain", preset)] = cfg
    with initialize_config_module("gantrain.cli.configs", version_base="1.3"):
        for command, (name, _) in COMMANDS.items():
            configs[(command, None)] = compose(name, overrides=[f"run={tiny_run}"] if name != "import" else [])
    return configs


def test_every_key_refuses_what_it_cannot_hold(composed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative probes (abc) name nothing that exists
    started, seen, used, problems = time.perf_counter(), set(), set(), []
    for (command, preset), cfg in composed.items():
        check = check_values if command == "gantrain" else (lambda c, s=COMMANDS[command][1]: validate(c, s))
        check(cfg)  # the preset's own values are valid
        found = run_cases(command, cfg, check, seen, used)
        problems += [f"{p} (experiment={preset})" if preset else p for p in found]
    assert not problems, "\n".join(problems)
    stale = {(pattern, probe) for pattern, why in ALLOWED.items() for probe in why} - used
    assert not stale, f"allowlist entries no probe needed: {sorted(stale)}"
    assert len(seen) > 300, len(seen)  # the whole space, not a sample of it
    keys = {command: len({(k, t) for c, k, t, _ in seen if c == command}) for command, _ in composed}
    print(f"{len(seen)} cases in {time.perf_counter() - started:.1f} s; keys (by node kind) per command: {keys}")


@pytest.mark.parametrize("argv, key", [
    (("gantrain", "optim.lr=abc"), "optim.lr"), (("gantrain", "trust_checkpoint=abc"), "trust_checkpoint"),
    (("gantrain-sample", "n=abc"), "n="), (("gantrain-eval", "num_samples=abc"), "num_samples"),
    (("gantrain-report", ".", "--rescore", "abc"), "--rescore"),
])
def test_a_sample_of_refusals_as_real_processes(cli, tiny_run, tmp_path, argv, key):
    run = [] if argv[0] in ("gantrain", "gantrain-report") else [f"run={tiny_run}"]
    done = cli.run(*argv, *run, cwd=tmp_path)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and key in lines[0], done.stderr
    assert not (tmp_path / "outputs").exists()  # refused before a run directory was made
