"""A GAN family from outside the package (tests/external: one System subclass, one YAML) trains, resumes,
samples and evaluates through the public commands, found with hydra.searchpath as the README describes."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from support import REPO

EXTERNAL = REPO / "tests" / "external"
SEARCHPATH = f"hydra.searchpath=[file://{EXTERNAL / 'configs'}]"


@pytest.fixture(scope="module")
def command(cli):
    """command(cwd, *argv): a console command as a user runs it, with the family's module importable (PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXTERNAL), os.environ.get("PYTHONPATH")]))}
    return lambda cwd, *argv: cli.run(*argv, cwd=cwd, env=env)


@pytest.fixture(scope="module")
def external_run(tmp_path_factory, command) -> Path:
    """4 debug steps of model=mean_match on the bundled digits, then resumed to 6."""
    cwd = tmp_path_factory.mktemp("external")
    run = cwd / "run"
    first = command(cwd, "gantrain", SEARCHPATH, "model=mean_match", "loss=bce_0_2", "trainer=debug",
                    f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr
    assert "match" in first.stderr + first.stdout  # the progress line is the family's own
    resumed = command(cwd, "gantrain", SEARCHPATH, "model=mean_match", "trainer=debug", f"trainer.resume={run}",
                      "trainer.max_steps=6")
    assert resumed.returncode == 0, resumed.stderr
    return run


def test_an_external_family_trains_and_resumes(external_run):
    state = torch.load(external_run / "checkpoints" / "last.pt", weights_only=True)
    assert state["step"] == 6 and state["config"]["model"]["_target_"] == "mean_match.MeanMatchGAN"
    # the user's YAML names the loss by its 0.2 module path; the resumed run's config names where it lives now
    assert state["config"]["loss"]["_target_"] == "gantrain.systems.losses.BCE"
    assert state["choices"]["model"] == "mean_match" and (external_run / "final.png").is_file()


def test_an_external_family_samples_only_when_trusted(external_run, command, tmp_path):
    refused = command(tmp_path, "gantrain-sample", f"run={external_run}", "n=8", f"out={tmp_path / 'x.npz'}")
    assert refused.returncode == 2 and "trust_checkpoint=true" in refused.stderr
    assert not (tmp_path / "x.npz").exists()
    trusted = command(tmp_path, "gantrain-sample", f"run={external_run}", "n=8", f"out={tmp_path / 's.npz'}",
                      "trust_checkpoint=true")
    assert trusted.returncode == 0, trusted.stderr
    images = np.load(tmp_path / "s.npz")["images"]
    assert images.shape == (8, 1, 32, 32) and images.dtype == np.uint8 and images.std() > 0


def test_an_external_family_is_evaluated(external_run, command, tmp_path):
    out = tmp_path / "metrics.json"
    proc = command(tmp_path, "gantrain-eval", f"run={external_run}", "trust_checkpoint=true", "metrics=[fid,kid]",
                   "num_samples=64", "real_samples=128", "classifier_epochs=1", "kid_subset_size=32", f"out={out}")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(out.read_text())
    assert scores["fid"] > 0 and "kid" in scores and "(step 6)" in scores["source"]
