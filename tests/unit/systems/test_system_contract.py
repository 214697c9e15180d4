"""The System contract (gantrain/systems/base.py), the typed trainer group and the moved config keys."""

import ast
import copy
import inspect
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import gantrain
from gantrain.cli.checks import check_command_line
from gantrain.config.build import system_from_checkpoint
from gantrain.config.migration import MOVED_KEYS, migrate_config
from gantrain.config.schema import default_settings
from gantrain.errors import UserError
from gantrain.systems.base import System
from gantrain.systems.cyclegan import CycleGAN
from gantrain.systems.gan import GAN

PACKAGE = Path(gantrain.__file__).parent
# every module outside the families' own sub-package is a caller of the contract
CALLERS = sorted(p for p in PACKAGE.rglob("*.py") if "systems" not in p.relative_to(PACKAGE).parts)
ABSTRACT = [name for name, member in vars(System).items()
            if callable(member) and "raise NotImplementedError" in inspect.getsource(member)]


def system_members_used(path: Path) -> set[str]:
    """Attributes read from a variable named `system` or from `self.system` in a module."""
    used = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "system") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "system"):
                used.add(node.attr)
    return used


def test_every_member_callers_use_is_declared_by_the_contract():
    used = set().union(*(system_members_used(path) for path in CALLERS))
    instance = System()
    undeclared = sorted(m for m in used if not hasattr(System, m) and not hasattr(instance, m)
                        and not hasattr(torch.nn.Module, m))
    assert not undeclared, f"callers use System members the contract does not declare: {undeclared}"
    assert {"d_loss", "g_loss", "preview", "num_classes", "draws_samples", "translates"} <= used


@pytest.mark.parametrize("family", [GAN, CycleGAN])
def test_shipped_families_implement_every_abstract_member(family):
    missing = [name for name in ABSTRACT if getattr(family, name) is getattr(System, name)]
    assert not missing and issubclass(family, System)
    assert family.networks and family.batch_keys


def test_hooks_do_nothing_and_capabilities_are_off_by_default():
    system = System()
    assert system.after_d_step() is None and system.after_g_step(1) is None
    assert not (System.draws_samples or System.translates or system.conditional)
    with pytest.raises(UserError, match="does not draw samples"):
        system.sample(4)
    with pytest.raises(UserError, match="does not translate"):
        system.translate(torch.zeros(1, 3, 8, 8))
    assert system.progress({"loss/D": 1.0, "loss/G": 2.0, "other": 3.0}) == "loss_D 1.0000  loss_G 2.0000"


def test_no_caller_probes_systems_or_data():
    probes = [f"{p.relative_to(PACKAGE)}:{n}" for p in PACKAGE.rglob("*.py")
              for n, line in enumerate(p.read_text().splitlines(), 1)
              if any(f"{fn}({who}" in line for fn in ("hasattr", "getattr") for who in ("system", "self.system", "data"))]
    assert not probes


# ------------------------------------------------------------------ the trainer's schema
def test_trainer_yaml_and_schema_agree():
    """configs/trainer/default.yaml sets every key of TrainerConfig to its default (one source of truth each
    for the comments and the types; this keeps them from drifting apart)."""
    values = yaml.safe_load((PACKAGE.parent / "configs" / "trainer" / "default.yaml").read_text())
    values.pop("defaults")
    assert values == default_settings()


@pytest.mark.parametrize("override, message", [
    ("trainer.max_steps=abc", "trainer.max_steps=abc: expected a positive integer"),
    ("trainer.progress=maybe", "trainer.progress=maybe: expected a boolean"),
    ("trainer.max_steps=0", "trainer.max_steps=0: expected a positive integer"),
    ("trainer.grad_clip=-1", "trainer.grad_clip=-1: expected a number >= 0, or null"),
    ("trainer.nan_policy=ignore", "trainer.nan_policy=ignore: expected one of stop, skip"),
    ("trainer.ema=0.999", "trainer.ema is now model.ema (moved in gantrain 0.2.0): write model.ema=... instead"),
    ("model.sync_bn=true", "model.sync_bn is now trainer.sync_bn"),
    ("model.n_blocks=6", "model.n_blocks is now model.generator.n_blocks"),
])
def test_wrong_trainer_values_and_moved_keys_are_refused_in_one_line(override, message):
    with pytest.raises(UserError) as err:
        check_command_line([override, "hydra.run.dir=/tmp/unused"])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_preset_of_ones_own_with_an_old_key_names_the_new_one(tmp_path):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\ntrainer:\n  ema: 0.999\n")
    with pytest.raises(UserError, match=r"^trainer.ema is now model.ema .* \(in a config file of this command line\)$"):
        check_command_line([f"hydra.searchpath=[file://{tmp_path}]", "experiment=mine"])


# ------------------------------------------------------------------ runs written before 0.2.0
OLD_GAN = {"model": {"_target_": "gantrain.systems.gan.GAN", "z_dim": 100, "sync_bn": False, "generator": {}},
           "trainer": {"max_steps": 4, "ema": 0.9, "ema_start": 2, "diffaugment": None}}
OLD_CYCLEGAN = {"model": {"_target_": "gantrain.systems.cyclegan.CycleGAN", "n_blocks": 6, "sync_bn": True,
                          "generator": {"n_blocks": 6}}, "trainer": {"ema": None, "ema_start": 0, "diffaugment": None}}


def test_saved_configs_of_0_1_are_migrated():
    gan = migrate_config(OLD_GAN)
    assert gan["model"] == {"_target_": "gantrain.systems.gan.GAN", "z_dim": 100, "generator": {}, "ema": 0.9,
                            "ema_start": 2, "diffaugment": None}
    assert gan["trainer"] == {"max_steps": 4, "sync_bn": False}
    cyclegan = migrate_config(OLD_CYCLEGAN)  # CycleGAN never had an EMA: the old trainer's nulls are dropped
    assert cyclegan["model"] == {"_target_": "gantrain.systems.cyclegan.CycleGAN", "generator": {"n_blocks": 6}}
    assert cyclegan["trainer"] == {"sync_bn": True}
    assert migrate_config(gan) == gan and OLD_GAN["trainer"]["ema"] == 0.9  # idempotent; the input is left alone
    assert {new for new, _ in MOVED_KEYS.values()} >= {"model.ema", "trainer.sync_bn"}


def as_0_1(config: dict) -> dict:
    """A current config written back in the 0.1 layout (what a checkpoint of 0.1.x holds)."""
    old = copy.deepcopy(config)
    for key in ("ema", "ema_start", "diffaugment"):
        old["trainer"][key] = old["model"].pop(key)
    old["model"]["sync_bn"] = old["trainer"].pop("sync_bn")
    return old


def test_a_run_of_0_1_resumes_and_samples(train, cli, tmp_path):
    from gantrain.training.checkpoint import load_checkpoint

    train("model.ema=0.9", "model.ema_start=1", run_dir=tmp_path)
    path = tmp_path / "checkpoints" / "last.pt"
    state = torch.load(path, weights_only=True)
    state["config"] = as_0_1(state["config"])
    torch.save(state, path)
    system = system_from_checkpoint(load_checkpoint(path))
    assert system.ema is not None and system.ema.decay == 0.9
    proc = cli.run("gantrain", f"trainer.resume={tmp_path}", "trainer.max_steps=6", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    resumed = torch.load(path, weights_only=True)
    assert resumed["step"] == 6 and resumed["config"]["model"]["ema"] == 0.9 and "ema" not in resumed["config"]["trainer"]
    assert OmegaConf.load(tmp_path / "config.yaml").model.ema == 0.9
