"""0.2's module paths and run folders keep working after the package was grouped by role: every old module path
imports (the same module, with a DeprecationWarning), the old attributes of gantrain.cli and gantrain.search are
found, and a checkpoint whose config names 0.2's `_target_`s resumes, samples, evaluates and exports."""

import importlib
import shutil
import sys
import warnings

import pytest
import torch

from gantrain.config.build import system_from_checkpoint
from gantrain.config.migration import migrate_config
from gantrain.config.trust import check_saved_config, targets_in
from gantrain.errors import UserError
from gantrain.moved import MOVED_ATTRIBUTES, MOVED_MODULES
from gantrain.training.checkpoint import load_checkpoint
from support import REPO

OLD_OF = {new: old for old, new in MOVED_MODULES.items()}


def as_written_by_0_2(config: dict) -> dict:
    """A config as gantrain 0.2.0 saved it: every `_target_` in a module that moved names its old path."""
    if isinstance(config, dict):
        return {k: old_target(v) if k == "_target_" else as_written_by_0_2(v) for k, v in config.items()}
    return config


def old_target(target: str) -> str:
    module, _, name = target.rpartition(".")
    return f"{OLD_OF.get(module, module)}.{name}"


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_every_old_module_path_imports_its_new_module_with_a_warning(old):
    new = importlib.import_module(MOVED_MODULES[old])
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {MOVED_MODULES[old]}"):
        module = importlib.import_module(old)
    assert module is new


def test_old_paths_import_in_a_new_process_with_from_imports(cli, tmp_path):
    code = ("import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
            "try:\n    from gantrain.losses import BCE\nexcept DeprecationWarning as w:\n    print('warned:', w)\n"
            "warnings.simplefilter('ignore')\nfrom gantrain.losses import BCE\nfrom gantrain import trainer\n"
            "import gantrain.systems.losses as new\nassert BCE is new.BCE and trainer.Trainer.__module__ == "
            "'gantrain.training.trainer'\nprint('ok')")
    done = cli.run("-c", code, cwd=tmp_path)  # a process of its own, where no old path was imported yet
    assert done.returncode == 0 and "warned: gantrain.losses moved to gantrain.systems.losses" in done.stdout, done.stderr
    assert done.stdout.strip().endswith("ok")


@pytest.mark.parametrize("package, name", [(p, n) for p, names in MOVED_ATTRIBUTES.items() for n in names])
def test_old_attributes_of_modules_that_became_packages(package, name):
    with pytest.warns(DeprecationWarning, match=f"{package}.{name} moved"):
        value = getattr(importlib.import_module(package), name)
    assert value is getattr(importlib.import_module(MOVED_ATTRIBUTES[package][name]), name)
    with pytest.raises(AttributeError):
        getattr(importlib.import_module(package), "no_such_thing")


def test_shipped_configs_name_no_old_path(compose):
    cfg = compose("hydra/sweeper=search")
    old = [target for _, target in targets_in(cfg) if old_target(target) != target and target.rpartition(".")[0]
           in MOVED_MODULES]
    assert not old


def test_a_0_2_config_is_migrated_and_trusted(tiny_run):
    saved = as_written_by_0_2(load_checkpoint(tiny_run)["config"])
    assert saved["loss"]["_target_"] == "gantrain.losses.Hinge" and saved["logger"]["_target_"] == "gantrain.loggers.RunLogger"
    with pytest.raises(UserError, match="gantrain.losses.Hinge"):
        check_saved_config(saved, "a 0.2 checkpoint")  # unmigrated, an old name is no code gantrain ships today
    migrated = migrate_config(saved)
    assert migrated["loss"]["_target_"] == "gantrain.systems.losses.Hinge"
    check_saved_config(migrated, "a 0.2 checkpoint")


@pytest.fixture(scope="module")
def run_0_2(tiny_run, tmp_path_factory):
    """A copy of the shared tiny run whose checkpoints are as gantrain 0.2.0 wrote them (old `_target_`s)."""
    run = tmp_path_factory.mktemp("v0_2") / "run"
    shutil.copytree(tiny_run, run)
    for path in (run / "checkpoints").glob("*.pt"):
        state = torch.load(path, weights_only=True)
        state["config"], state["gantrain_version"] = as_written_by_0_2(state["config"]), "0.2.0"
        torch.save(state, path)
    return run


def test_a_0_2_run_resumes_samples_and_exports(run_0_2, cli, tmp_path):
    """(gantrain-eval rebuilds the system the same way, through system_from_checkpoint, checked first here)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        system_from_checkpoint(load_checkpoint(run_0_2))  # builds without trust_checkpoint
    commands = [("gantrain", f"trainer.resume={run_0_2}", "trainer.max_steps=6"),
                ("gantrain-sample", f"run={run_0_2}", "n=8", f"out={tmp_path / 's.npz'}"),
                ("gantrain-export", f"run={run_0_2}", "format=torchscript", f"out={tmp_path / 'g.pt'}")]
    for argv in commands:
        done = cli.run(*argv, cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stderr[-2000:])
    assert torch.load(run_0_2 / "checkpoints" / "last.pt", weights_only=True)["step"] == 6
    assert (tmp_path / "s.npz").is_file() and (tmp_path / "g.pt").is_file()


def test_the_changelog_lists_every_moved_module():
    text = (REPO / "CHANGELOG.md").read_text()
    missing = [old for old, new in MOVED_MODULES.items() if f"| `{old}` | `{new}` |" not in text]
    assert not missing, f"CHANGELOG.md's table of moved modules lacks {missing}"
