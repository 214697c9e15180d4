"""The command-line pre-check accepts what Hydra accepts (search paths, +group=option, plugin groups,
sweeps) and refuses, in one line, what Hydra refuses: it is tested against Hydra itself."""

import os
import textwrap

import pytest
from hydra import compose, initialize_config_module
from hydra.errors import HydraException

from gantrain.cli.checks import check_command_line, hydra_flags
from gantrain.errors import UserError


@pytest.fixture
def own_model(tmp_path, monkeypatch):
    """A user's model outside gantrain: my_configs/model/mygan.yaml naming classes of mypackage."""
    (tmp_path / "mypackage").mkdir()
    (tmp_path / "mypackage" / "__init__.py").write_text("")
    (tmp_path / "mypackage" / "nets.py").write_text(textwrap.dedent("""
        from gantrain.models.mlp import Discriminator as _D, Generator as _G

        class Generator(_G):
            pass

        class Discriminator(_D):
            pass
    """))
    (tmp_path / "my_configs" / "model").mkdir(parents=True)
    (tmp_path / "my_configs" / "model" / "mygan.yaml").write_text(textwrap.dedent("""
        _target_: gantrain.systems.gan.GAN
        z_dim: 16
        z_dist: normal
        generator:
          _target_: mypackage.nets.Generator
        discriminator:
          _target_: mypackage.nets.Discriminator
    """))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def hydra_composes(line: list[str]) -> bool:
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        try:
            compose("config", overrides=line, return_hydra_config=True)
            return True
        except HydraException:
            return False


def precheck_accepts(line: list[str]) -> bool:
    try:
        check_command_line(line)
        return True
    except UserError as err:
        assert "\n" not in str(err)
        return False


LINES = [
    ["model=mygan"],                                           # not on the search path: refused by both
    ["hydra.searchpath=[file://my_configs]", "model=mygan"],   # on it: accepted by both
    ["hydra.searchpath=[file://my_configs]", "model=mygan", "model.z_dim=8"],
    ["hydra.searchpath=[file://my_configs]", "model=mygan", "model.z_dm=8"],
    ["hydra.searchpath=[file://my_configs]", "model=dcgn"],
    ["+note=hello"],                                           # a new key, on purpose (the root takes any)
    ["note=hello"],                                            # a new key without +: refused
    ["~experiment"],
    ["+model=dcgan"],                                          # the group is already chosen: Hydra refuses
    ["hydra/launcher=parallel"],                               # a group a plugin adds
    ["hydra/launcher=nope"],
    ["experiment=cs231n_dcgan", "loss=lsgan"],
    ["model.generator.width=8"],
    ["model.generatr.width=8"],
]


@pytest.mark.parametrize("line", LINES, ids=lambda line: " ".join(line))
def test_the_precheck_accepts_exactly_what_hydra_composes(own_model, line):
    assert precheck_accepts(line) == hydra_composes(line)


def test_a_sweep_is_refused_for_any_bad_value_and_an_interval_is_left_to_the_sweeper(own_model):
    with pytest.raises(UserError, match=r"loss=lsgn is not an option of loss \(did you mean lsgan\?\)"):
        check_command_line(["-m", "loss=bce,lsgn"])
    check_command_line(["-m", "hydra.searchpath=[file://my_configs]", "model=dcgan,mygan"])
    check_command_line(["-m", "optim.lr=interval(1e-4,1e-3)"])  # only Optuna-like sweepers sample these


def test_both_spellings_of_debug_together_are_one_line():
    with pytest.raises(UserError, match="trainer=debug and debug=default say the same thing"):
        check_command_line(["trainer=debug", "debug=default"])
    check_command_line(["debug=default"])
    check_command_line(["trainer=debug", "debug=none"])


def test_our_flag_parser_knows_every_flag_of_hydras_own(cli, tmp_path):
    """Hydra's own list of its flags, as `--hydra-help` prints it (its public help, not its internals)."""
    done = cli.run("-m", "gantrain", "--hydra-help", cwd=tmp_path, timeout=120)
    flags_part = done.stdout.split("== Flags ==")[1].split("== Configuration groups ==")[0]
    theirs = {flag for line in flags_part.splitlines() if line.startswith("--")
              for flag in line.split(" : ")[0].split(",")}
    ours = {s for action in hydra_flags()._actions for s in action.option_strings}
    assert len(theirs) >= 20 and theirs <= ours, f"flags Hydra has and the pre-check does not know: {sorted(theirs - ours)}"


def test_a_model_from_the_search_path_trains_through_the_real_command(cli, own_model):
    env = {**os.environ, "PYTHONPATH": f"{own_model}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("HYDRA_FULL_ERROR", None)  # the pre-check runs
    done = cli.run("-m", "gantrain", "hydra.searchpath=[file://my_configs]", "model=mygan", "trainer=debug",
                   "trainer.max_steps=1", "hydra.run.dir=run", cwd=own_model, env=env)
    assert done.returncode == 0, done.stderr
    assert (own_model / "run" / "checkpoints" / "last.pt").is_file()
    assert "mypackage.nets.Generator" in (own_model / "run" / "config.yaml").read_text()
