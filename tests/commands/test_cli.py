"""The console scripts as real processes: training, TensorBoard contents, resume, sampling, sweeps."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import REPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A program run in a fresh interpreter (pip), which must succeed."""
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


@pytest.fixture(scope="module")
def cli_run(cli, tiny, tmp_path_factory) -> Path:
    """`gantrain` with the tiny settings, run in an empty folder without hydra.run.dir; read by several tests."""
    cwd = tmp_path_factory.mktemp("cli_run")
    cli.run("gantrain", *tiny, cwd=cwd, check=True)
    return cwd


def test_train_cli_writes_tensorboard_pngs_and_checkpoints(cli_run):
    (run_dir,) = list((cli_run / "outputs").glob("*/*"))
    acc = events(run_dir)
    scalars = set(acc.Tags()["scalars"])
    assert {"loss/D", "loss/G", "D(x)", "D(G(z))/before_D_step", "D(G(z))/after_D_step", "grad_norm/D",
            "grad_norm/G", "perf/images_per_sec", "lr/G", "lr/D"} <= scalars
    assert [e.step for e in acc.Scalars("loss/D")] == [2, 4]
    assert {"real", "samples"} <= set(acc.Tags()["images"])
    for name in ("final.png", "progress.gif", "samples/real.png", "checkpoints/last.pt", "config.yaml", ".hydra/config.yaml"):
        assert (run_dir / name).is_file(), name


def test_default_output_dir_is_dated_under_outputs(cli_run):
    (run_dir,) = list((cli_run / "outputs").glob("*/*"))
    assert len(run_dir.parent.name) == 10 and len(run_dir.name) == 8  # YYYY-MM-DD/HH-MM-SS


def test_resume_continues_the_same_run_directory(cli, tmp_path):
    run_dir = tmp_path / "run"
    cli.run("gantrain", "experiment=cs231n_vanilla", "data=digits", "data.image_size=28", "trainer=debug",
            "trainer.max_steps=4", f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    # no groups repeated: the checkpoint's config (cs231n_vanilla on digits) is reused
    proc = cli.run("gantrain", f"trainer.resume={run_dir}", "trainer.max_steps=8", cwd=tmp_path, check=True)
    assert "resumed from" in proc.stderr + proc.stdout
    steps = [e.step for e in events(run_dir).Scalars("loss/D")]
    assert steps == [2, 4, 6, 8]
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["generator"]["_target_"].endswith("mlp.Generator")
    assert not (tmp_path / "outputs").exists()  # nothing written elsewhere


def test_resume_refuses_a_different_model(cli, cli_run, tmp_path):
    run_dir = shutil.copytree(next((cli_run / "outputs").glob("*/*")), tmp_path / "run")  # the resume writes .hydra/
    proc = cli.run("gantrain", f"trainer.resume={run_dir}", "model=mlp", cwd=tmp_path)
    assert proc.returncode == 2
    assert "model=mlp" in proc.stderr and "Traceback" not in proc.stderr


def test_sample_cli_writes_npz_and_png(cli, cli_run, tmp_path):
    (run_dir,) = list((cli_run / "outputs").glob("*/*"))
    cli.run("gantrain-sample", f"run={run_dir}", "n=37", "batch_size=10", f"out={tmp_path / 'gen' / 's.npz'}", cwd=tmp_path,
            check=True)
    images = np.load(tmp_path / "gen" / "s.npz")["images"]
    assert images.shape == (37, 1, 32, 32) and images.dtype == np.uint8
    assert images.min() >= 0 and images.max() <= 255 and images.std() > 0
    assert (tmp_path / "gen" / "s.png").is_file()
    assert not (tmp_path / ".hydra").exists() and not (tmp_path / "outputs").exists()


def test_help_lists_groups_and_cfg_prints_config(cli, tmp_path):
    out = cli.run("gantrain", "--help", cwd=tmp_path, check=True).stdout
    groups = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line and line.split(":")[0].isidentifier())
    for group, option in (("data", "digits"), ("model", "dcgan"), ("loss", "lsgan"), ("experiment", "cs231n_dcgan"),
                          ("optim", "rmsprop"), ("trainer", "debug")):
        assert option in groups[group].split(", "), (group, option)
    cfg = yaml.safe_load(cli.run("gantrain", "--cfg", "job", "model=mlp", cwd=tmp_path, check=True).stdout)
    assert cfg["model"]["generator"]["_target_"] == "gantrain.models.mlp.Generator"


def test_user_errors_are_one_line(cli, tmp_path):
    proc = cli.run("gantrain", "trainer=debug", "data=mnist", f"data.root={tmp_path}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("gantrain: error: data=mnist: files not found")
    assert "Traceback" not in proc.stderr


def test_multirun_gives_each_job_a_run_with_hparams(cli, tiny, tmp_path):
    cli.run("gantrain", "-m", *tiny, "loss=bce,lsgan", "trainer.max_steps=2", f"hydra.sweep.dir={tmp_path / 'sweep'}",
            cwd=tmp_path, check=True)
    runs = sorted((tmp_path / "sweep").glob("[0-9]"))
    assert [r.name for r in runs] == ["0", "1"]
    for job, loss in zip(runs, ("bce", "lsgan")):
        acc = events(job)
        assert "loss/D" in acc.Tags()["scalars"]
        plugin = acc.PluginTagToContent("hparams")
        from tensorboard.plugins.hparams import plugin_data_pb2

        content = plugin_data_pb2.HParamsPluginData.FromString(plugin["_hparams_/session_start_info"])
        assert content.session_start_info.hparams["loss"].string_value == loss


def test_plain_install_finds_the_configs(tmp_path):
    """A wheel (what `pip install .` installs) carries configs/ as gantrain.configs."""
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(REPO), cwd=tmp_path)
    (wheel,) = list((tmp_path / "wheel").glob("gantrain-*.whl"))
    target = tmp_path / "site"
    run(sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel), cwd=tmp_path)
    assert (target / "gantrain" / "configs" / "model" / "dcgan.yaml").is_file()
    code = ("import gantrain, hydra; from hydra import compose, initialize_config_module;\n"
            "assert 'site' in gantrain.__file__, gantrain.__file__\n"
            "with initialize_config_module('gantrain.configs', version_base='1.3'):\n"
            "    print(compose('config', overrides=['experiment=cs231n_dcgan']).model.generator._target_)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "gantrain.models.infogan.Generator"


def test_slurm_launcher_preset_composes(cli, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    out = cli.run("gantrain", "hydra/launcher=slurm", "--cfg", "hydra", "-p", "hydra.launcher", cwd=tmp_path, check=True).stdout
    launcher = yaml.safe_load(out)
    assert launcher["gpus_per_node"] == 1 and launcher["_target_"].endswith("SlurmLauncher")
