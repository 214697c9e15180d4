"""A checkpoint cannot run code: not through its pickle (weights_only=True) and not through its saved
config, whose targets must be gantrain's own unless the user says trust_checkpoint=true."""

import os
import pickle
import shutil

import pytest
import torch

from gantrain.config.build import system_from_checkpoint
from gantrain.config.trust import check_saved_config, shipped_targets
from gantrain.errors import UserError
from gantrain.training.checkpoint import load_checkpoint


class Payload:
    """Unpickling this creates a file: proof that the checkpoint ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def evil_checkpoint(tiny_run, tmp_path_factory):
    """A real gantrain checkpoint whose config.loss is torch.load of a pickle that creates `marker`."""
    base = tmp_path_factory.mktemp("evil")
    run = shutil.copytree(tiny_run, base / "run")  # built with no meta: build_trainer records the config itself
    marker = base / "PWNED"
    with open(base / "payload.pkl", "wb") as f:
        pickle.dump(Payload(str(marker)), f)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["config"]["loss"] = {"_target_": "torch.load", "_args_": [str(base / "payload.pkl")], "weights_only": False}
    evil = base / "evil.pt"
    torch.save(state, evil)
    return evil, marker


@pytest.mark.parametrize("command", [
    ["gantrain-sample", "run={evil}", "n=4", "out={tmp}/s.npz"],
    ["gantrain-eval", "run={evil}", "num_samples=4", "classifier_epochs=1", "out={tmp}/m.json"],
    ["gantrain", "trainer.resume={evil}", "trainer.max_steps=6"],
], ids=["sample", "eval", "resume"])
def test_every_command_that_reads_a_checkpoint_refuses_a_config_that_names_foreign_code(cli, evil_checkpoint, command,
                                                                                         tmp_path):
    evil, marker = evil_checkpoint
    marker.unlink(missing_ok=True)
    args = [a.format(evil=evil, tmp=tmp_path) for a in command]
    done = cli.run(*args, cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"})
    assert not marker.exists(), "the checkpoint's config ran code"
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "torch.load" in last and "trust_checkpoint=true" in last and "Traceback" not in done.stderr


def test_the_check_happens_before_anything_is_built(evil_checkpoint):
    evil, marker = evil_checkpoint
    with pytest.raises(UserError, match=r"torch\.load \(at loss\._target_\)"):
        system_from_checkpoint(load_checkpoint(evil))
    assert not marker.exists()


def test_nested_and_listed_targets_are_found_and_trust_lets_them_through():
    config = {"model": {"_target_": "gantrain.systems.gan.GAN", "generator": {"_args_": [{"_target_": "os.system"}]}}}
    with pytest.raises(UserError, match=r"os\.system \(at model\.generator\._args_\[0\]\._target_\)"):
        check_saved_config(config, "x.pt")
    check_saved_config(config, "x.pt", trust=True)
    check_saved_config(config, "x.pt", also_allowed=["os.system"])  # what the user's own command line names


def test_a_run_built_without_meta_records_config_choices_and_version(evil_checkpoint):
    """build_trainer writes what sampling needs into every checkpoint, whoever called it."""
    from gantrain import __version__

    state = load_checkpoint(evil_checkpoint[0].parent / "run")
    assert state["gantrain_version"] == __version__ and "choices" in state
    assert system_from_checkpoint(state) is not None


def test_every_shipped_target_is_gantrains_or_torchs_optimizers():
    assert "gantrain.systems.gan.GAN" in shipped_targets() and "torch.optim.Adam" in shipped_targets()
    assert all(t.startswith(("gantrain.", "torch.optim.")) for t in shipped_targets())
