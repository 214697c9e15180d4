"""Sweeps that search: a run's objective and summary.json, early stopping, resumable grid and Optuna sweeps
(killed mid-way and run again), gantrain-report, and the HPARAMS tab's metrics."""

import csv
import json
import re
import shutil

import numpy as np
import optuna
import pytest
import torch
from PIL import Image
from support import REPO
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gantrain.cli import report as report_main
from gantrain.cli.checks import check_command_line
from gantrain.device import device_for_sweep_job
from gantrain.errors import UserError
from gantrain.search.report import svg_plot

QUICK_EVAL = ("trainer.eval_every=2", "metrics.num_samples=64", "metrics.real_samples=128",
              "metrics.classifier_epochs=1", "metrics.metrics=[fid]")
GRID = ("gantrain", "-m", "seed=0,1,2", "trainer=debug", "model.generator.width=8", "model.discriminator.width=8",
        "trainer.max_steps=6", "trainer.checkpoint_every=2")
SEARCH = ("gantrain", "-m", "hydra/sweeper=search", "hydra.sweeper.n_trials=3", "trainer=debug",
          "model.generator.width=8", "model.discriminator.width=8", *QUICK_EVAL,
          "optim.generator.lr=tag(log, interval(1e-5, 1e-3))", "loss=choice(bce, lsgan)")
# the sweep's second run is stopped by SIGTERM after its third step, as a user's Ctrl-C or a cluster would
KILL_SECOND_RUN = """
import os, signal, sys
import gantrain.cli, gantrain.training.trainer as t
begun, step = [], t.Trainer.train_step
def train_step(self):
    step(self)
    if self.step == 3 and len(begun) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
begin = t.Trainer.begin
t.Trainer.train_step = train_step
t.Trainer.begin = lambda self: (begun.append(1), begin(self))[1]
sys.argv = ["gantrain", *sys.argv[1:]]
gantrain.cli.train()
"""


def weights(run_dir):
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["generator"]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_a_grid_sweep_killed_midway_continues_where_it_stopped(cli, tmp_path):
    straight = cli.run(*GRID, "hydra.sweep.dir=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    killed = cli.run("-c", KILL_SECOND_RUN, *GRID[1:], "hydra.sweep.dir=sweep", cwd=tmp_path)
    sweep = tmp_path / "sweep"
    assert killed.returncode == 128 + 15
    assert summary(sweep / "0")["status"] == "finished" and summary(sweep / "1")["status"] == "interrupted"
    assert not (sweep / "2").exists()
    untouched = (sweep / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns
    again = cli.run(*GRID, "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    log = again.stdout + again.stderr
    assert "already finished" in log and "was interrupted: resuming" in log
    assert (sweep / "0" / "checkpoints" / "last.pt").stat().st_mtime_ns == untouched  # not trained again
    for job in ("0", "1", "2"):
        assert summary(sweep / job)["status"] == "finished" and summary(sweep / job)["steps"] == 6
        assert all(torch.equal(a, b) for a, b in zip(weights(sweep / job).values(),
                                                     weights(tmp_path / "straight" / job).values())), job


def study_trials(sweep_dir) -> list[tuple]:
    study = optuna.load_study(study_name="gantrain", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")
    return [(t.params, t.value) for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))]


def test_an_optuna_search_killed_midway_continues_to_the_same_result(cli, tmp_path):
    search = (*SEARCH, "hydra.sweeper.n_trials=2")  # the second trial is killed, then asked again and resumed
    straight = cli.run(*search, "hydra.sweep.dir=straight", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert "top runs:" in straight.stderr and "Best value" in straight.stdout + straight.stderr
    killed = cli.run("-c", KILL_SECOND_RUN, *search[1:], "hydra.sweep.dir=search", cwd=tmp_path)
    assert killed.returncode == 128 + 15 and len(study_trials(tmp_path / "search")) == 1
    again = cli.run(*search, "hydra.sweep.dir=search", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "was interrupted: resuming" in again.stdout + again.stderr  # the killed trial, asked again, resumed
    assert study_trials(tmp_path / "search") == study_trials(tmp_path / "straight")
    finished = cli.run(*search, "hydra.sweep.dir=search", cwd=tmp_path)  # a finished search trains nothing
    assert finished.returncode == 0 and "2 of n_trials=2 trials finished, 0 running, 0 to go" in finished.stdout + finished.stderr
    assert len(study_trials(tmp_path / "search")) == 2

    # the ranked report of the search: table, CSV, Markdown and a self-contained page
    report_main([str(tmp_path / "search")])
    with open(tmp_path / "search" / "report.csv") as f:
        table = list(csv.DictReader(f))
    values = [float(row["best"].split()[1]) for row in table]
    assert len(table) == 2 and values == sorted(values) and table[0]["status"] == "finished"
    assert all(re.match(r"(loss|optim\.generator\.lr)=", row["params"]) for row in table)  # what differs
    page = (tmp_path / "search" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<svg" in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")


def test_trials_asked_together_get_parameters_of_their_own(cli, tmp_path):
    """hydra.sweeper.n_jobs=2 asks trials in pairs, for a parallel launcher to run side by side (Hydra's joblib
    launcher, which the guide's hydra/launcher=parallel command runs); here Hydra's basic launcher runs each pair in
    turn, which asks the study exactly the same way."""
    proc = cli.run(*SEARCH, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.sweep.dir=parallel",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = sorted((tmp_path / "parallel").glob("trial-*"))
    assert len(trials) == 2 and all(summary(t)["status"] == "finished" for t in trials)
    assert len({tuple(summary(t)["overrides"]) for t in trials}) == 2


def test_a_search_needs_evaluations():
    with pytest.raises(UserError, match=r"a search optimises trainer.best_metric \(fid\).*add trainer.eval_every=N"):
        check_command_line(["-m", "hydra/sweeper=search", "trainer=debug"])
    check_command_line(["-m", "hydra/sweeper=gan_search", "trainer=debug", "trainer.eval_every=2"])
    with pytest.raises(UserError, match="the search has nothing to search"):
        check_command_line(["-m", "hydra/sweeper=search", "trainer=debug", "trainer.eval_every=2"])
    check_command_line(["-m", "hydra/sweeper=search", "trainer=debug", "trainer.eval_every=2", "loss=bce,lsgan"])


@pytest.mark.parametrize("metric, direction", [("fid", "minimize"), ("kid", "minimize"), ("is", "maximize"),
                                               ("precision", "maximize"), ("recall", "maximize")])
def test_the_search_direction_follows_the_metric(compose, metric, direction):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/sweeper=gan_search", f"trainer.best_metric={metric}"],
                            return_hydra_config=True)
    assert cfg.hydra.sweeper.direction == direction and cfg.hydra.sweeper.storage.endswith("/optuna.db")
    assert set(cfg.hydra.sweeper.params) >= {"optim.generator.lr", "optim.discriminator.lr", "loss", "model.ema"}


def test_parallel_jobs_on_a_multi_gpu_machine_get_a_gpu_each(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [device_for_sweep_job("auto", n) for n in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    assert device_for_sweep_job("cpu", 1) == "cpu" and device_for_sweep_job("cuda:2", 1) == "cuda:2"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert device_for_sweep_job("auto", 3) == "auto"


# ------------------------------------------------------------------ one run: objective, early stopping, summary
def test_early_stopping_ends_cleanly_and_returns_the_best_value(train, tmp_path):
    trainer = train(*QUICK_EVAL, "trainer.max_steps=40", "trainer.patience=1")
    run = trainer.run_dir
    result = summary(run)
    assert result["status"] == "stopped_early" and "trainer.patience=1" in result["reason"]
    assert result["steps"] < 40 and result["steps"] == trainer.step and (run / "final.png").is_file()
    assert len(result["evaluations"]) >= 2 and result["best"]["value"] == min(e["fid"] for e in result["evaluations"])
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == trainer.step
    assert result["wall_seconds"] > 0 and result["images_per_sec"] > 0 and result["gantrain_version"]
    tags = EventAccumulator(str(run), size_guidance={"tensors": 0}).Reload().Tags()
    assert "metrics/fid" in tags["scalars"]


def test_a_threshold_not_met_in_time_stops_the_run(train):
    trainer = train(*QUICK_EVAL, "trainer.max_steps=40", "trainer.must_reach=0", "trainer.must_reach_by=4")
    result = summary(trainer.run_dir)
    assert result["status"] == "stopped_early" and result["steps"] == 4 and "has not reached 0 by step 4" in result["reason"]


def test_a_time_budget_stops_the_run_and_evaluations_record_training_seconds(train):
    """trainer.max_seconds counts training only: each evaluation records the training seconds before it, which
    grow by less than the wall time (the evaluations' own time is left out)."""
    trainer = train(*QUICK_EVAL, "trainer.max_steps=40", "trainer.max_seconds=0.001")
    result = summary(trainer.run_dir)
    assert result["status"] == "stopped_early" and result["steps"] == 1 and "trainer.max_seconds=0.001" in result["reason"]
    assert 0 < result["evaluations"][-1]["seconds"] <= result["train_seconds"] < result["wall_seconds"]
    longer = summary(train(*QUICK_EVAL, "trainer.max_steps=6").run_dir)
    seconds = [e["seconds"] for e in longer["evaluations"]]
    assert [e["step"] for e in longer["evaluations"]] == [2, 4, 6] and seconds == sorted(seconds) and seconds[0] > 0
    assert "seconds" not in longer["final_metrics"]


@pytest.mark.parametrize("overrides, message", [
    (("trainer.max_seconds=0",), "trainer.max_seconds=0: expected a positive number, or null"),
    (("trainer.patience=2",), "early stopping (trainer.patience, trainer.must_reach) judges evaluations"),
    (("trainer.eval_every=2", "trainer.must_reach=50"), "set both"),
    (("trainer.eval_every=2", "trainer.patience=0"), "trainer.patience=0: expected a positive integer, or null"),
])
def test_early_stopping_settings_are_checked_in_one_line(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        check_command_line(["trainer=debug", *overrides, "hydra.run.dir=/tmp/unused"])


def test_the_hparams_tab_declares_the_metrics(train):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run = train(*QUICK_EVAL).run_dir
    events = EventAccumulator(str(run)).Reload()
    content = events.PluginTagToContent("hparams")["_hparams_/experiment"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content).experiment
    assert {m.name.tag for m in experiment.metric_infos} >= {"loss/D", "loss/G", "metrics/fid"}


def test_a_run_that_fails_before_training_says_so_in_its_summary(cli, tmp_path):
    (tmp_path / "empty").mkdir()  # a folder, as the config's check wants, but without images: the data set fails
    proc = cli.run("gantrain", "data=folder", f"data.root={tmp_path / 'empty'}", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    result = summary(tmp_path / "run")
    assert result["status"] == "failed" and result["reason"] and result["steps"] == 0


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no Chromium to render the report page (apt-get install chromium)")
def test_the_report_page_renders_in_a_browser(cli, tiny_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(tiny_run, runs / "a")
    report_main([str(runs)])
    proc = cli.run(str(REPO / "scripts" / "report_screenshot.py"), str(runs), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    picture = np.asarray(Image.open(runs / "report.png").convert("L"))
    assert picture.shape[1] >= 1000 and picture.std() > 10  # a page with a table and a grid, not a blank one


def test_report_plots_put_values_over_decades_on_a_log_scale():
    """One diverged trial (FID 1,000 beside tens) must not flatten the others onto the axis."""
    wide = svg_plot([(1e-4, 10.0), (2e-4, 20.0), (3e-4, 1000.0)], "lr", "fid", line=False)
    heights = [float(y) for y in re.findall(r'cy="([\d.]+)"', wide)]
    assert "fid (log scale): 10 .. 1000" in wide and heights[0] - heights[1] > 20  # 10 and 20 well apart
    assert "log scale" not in svg_plot([(1, 10.0), (2, 20.0)], "lr", "fid", line=False)
