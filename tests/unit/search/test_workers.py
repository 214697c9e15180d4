"""Search workers (gantrain-search) sharing one study: two workers in two processes against SQLite, a journal file and
a real PostgreSQL server; pruning through the run's clean early stop (one process and DDP); the search space's syntax;
the sampler a continued search repeats; the dashboard reading a study; the dependency set."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from importlib.metadata import PackageNotFoundError, distribution, requires
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from packaging.requirements import Requirement
from support import REPO
from support.search import postgres_bin, throwaway_cluster

from gantrain.config.build import instantiate
from gantrain.errors import UserError
from gantrain.search import study as studies
from gantrain.search.report import find_runs
from gantrain.search.space import search_space

QUICK_EVAL = ("trainer.eval_every=2", "metrics.num_samples=64", "metrics.real_samples=128",
              "metrics.classifier_epochs=1", "metrics.metrics=[fid]")
N_TRIALS = 4  # each worker gets a second trial (the second worker starts once the first has begun its first)
# the worker that is killed: SIGKILL (no clean-up, no last heartbeat) at step 3 of its second trial, whose checkpoint
# of step 2 is on disk; the other worker must notice through the heartbeat and resume that trial
KILL_IN_SECOND_TRIAL = """
import os, signal, sys
import gantrain.cli, gantrain.training.trainer as t
begun, step, begin = [], t.Trainer.train_step, t.Trainer.begin
def train_step(self):
    step(self)
    if self.step == 3 and len(begun) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
t.Trainer.train_step = train_step
t.Trainer.begin = lambda self: (begun.append(1), begin(self))[1]
sys.argv = ["gantrain-search", *sys.argv[1:]]
gantrain.cli.search()
"""


def worker_argv(tiny, storage: str, sweep: Path, n_trials: int) -> list[str]:
    return [*tiny, "trainer.max_steps=6", "trainer.sample_every=6", *QUICK_EVAL, "optim.generator.lr=tag(log, interval(1e-5, 1e-3))",
            f"hydra.sweeper.n_trials={n_trials}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={sweep}",
            "hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2",
            "hydra/sweeper/pruner=none", "hydra.sweeper.pruner._target_=support.search.PruneOddFolders"]


def two_workers(cli, tiny, storage: str, folder: Path, kill: bool, n_trials: int = N_TRIALS,
                extra: tuple = ()) -> tuple[Path, list]:
    """Two `gantrain-search` processes on one study (the first killed in its second trial when `kill`): the search
    folder and both processes' (exit status, log). The second starts once the first has begun a trial: started
    together on a busy machine, the second took three of the four trials before the first asked for one."""
    sweep = folder / "search"
    env = {**os.environ, "PYTHONPATH": str(REPO / "tests"), "OMP_NUM_THREADS": "1"}
    argv = [*worker_argv(tiny, storage, sweep, n_trials), *extra]
    first = cli.start("-c", KILL_IN_SECOND_TRIAL, *argv, cwd=folder, env=env) if kill else \
        cli.start("gantrain-search", *argv, cwd=folder, env=env)
    wait_for_a_trial(first)
    second = cli.start("gantrain-search", *argv, cwd=folder, env=env)
    done = []
    for worker in (first, second):
        worker.wait(240)
        out, err = worker.communicate()
        done.append((worker.returncode, out + err))
    return sweep, done


def wait_for_a_trial(worker, timeout: float = 120) -> None:
    """Until the worker's log says it made a trial's run directory (or it ended)."""
    deadline = time.monotonic() + timeout
    logs = (worker.err, worker.out)
    while not any(path.is_file() and "run directory" in path.read_text(errors="replace") for path in logs):
        assert time.monotonic() < deadline, "the first worker began no trial"
        try:
            worker.wait(0.1)
            return  # it ended: its exit status and log tell the rest
        except subprocess.TimeoutExpired:
            pass


def check_shared_study(storage: str, sweep: Path, workers: list, killed: bool, n_trials: int = N_TRIALS) -> None:
    """Exactly n_trials finished trials, each trained once (a killed one resumed, not restarted), both workers busy,
    pruned trials ended at their pruning step and their worker went on to another trial."""
    (first_status, first_log), (second_status, second_log) = workers
    assert second_status == 0, second_log
    assert first_status == (-signal.SIGKILL if killed else 0), first_log
    study = optuna.load_study(study_name="gantrain", storage=studies.open_storage(storage, None, None))
    finished = [t for t in study.get_trials() if t.state in studies.FINISHED]
    folders = sorted(t.user_attrs["run_folder"] for t in finished)
    # each in its own folder, named after the trial first asked (a queued copy of a killed trial takes a number)
    originals = sorted(f"trial-{t.system_attrs.get('retry_of', t.number):04d}" for t in finished)
    assert len(set(folders)) == n_trials and folders == originals, [(t.number, t.state, t.user_attrs)
                                                                    for t in study.get_trials()]
    for trial in finished:  # the pruner's verdict reached the study, and the run's summary says the same
        pruned = int(trial.user_attrs["run_folder"][-4:]) % 2 == 1
        summary = json.loads((sweep / trial.user_attrs["run_folder"] / "summary.json").read_text())
        assert trial.state == (TrialState.PRUNED if pruned else TrialState.COMPLETE)
        assert (summary["status"], summary["steps"]) == (("pruned", 4) if pruned else ("finished", 6)), summary
        assert [e["step"] for e in summary["evaluations"]] == ([2, 4] if pruned else [2, 4, 6])
    logs = first_log + second_log
    started = Counter(re.findall(r"run directory: \S*/(trial-\d+)", logs))
    resumed = Counter(re.findall(r"(trial-\d+) was interrupted: resuming", logs))
    assert {f: started[f] - resumed[f] for f in started} == {f: 1 for f in folders}  # trained from scratch once each
    assert "run directory" in first_log and "run directory" in second_log  # both workers trained
    trials = study.get_trials()
    for pruned in (t for t in trials if t.state == TrialState.PRUNED):  # its worker took the next trial, if any was left
        later = [t for t in trials if t.datetime_start > pruned.datetime_complete]
        assert not later or any(t.user_attrs.get("worker") == pruned.user_attrs.get("worker") for t in later)
    if killed:  # the killed worker's trial went to the other worker, which resumed it from step 2
        (lost,) = re.findall(r"run directory: \S*/(trial-\d+)", first_log)[1:]
        assert f"{lost} was interrupted: resuming" in second_log
        assert len([t for t in study.get_trials() if t.state == TrialState.FAIL]) == 1
    assert {run.summary["status"] for run in find_runs(sweep)} == {"finished", "pruned"}  # gantrain-report reads it


def test_two_workers_share_a_sqlite_study_and_one_resumes_a_killed_workers_trial(cli, tiny, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search' / 'optuna.db'}"
    sweep, workers = two_workers(cli, tiny, storage, tmp_path, kill=True)
    check_shared_study(storage, sweep, workers, killed=True)
    check_dashboard(storage)


def test_two_workers_share_a_journal_file_and_log_to_one_mlflow_store(cli, tiny, tmp_path, mlflow_store):
    """Without the kill (a journal file has no heartbeat), and with logger=mlflow: the two processes write their trials'
    runs to one SQLite store in the search's folder, one experiment, one MLflow run per trial."""
    storage = str(tmp_path / "search" / "journal.log")
    mlflow_store(tmp_path / "search")
    sweep, workers = two_workers(cli, tiny, storage, tmp_path, kill=False, n_trials=3, extra=("logger=mlflow",))
    check_shared_study(storage, sweep, workers, killed=False, n_trials=3)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{sweep / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = {run.info.run_name: run for run in client.search_runs([experiment.experiment_id])}
    assert experiment.name == str(sweep) and sorted(runs) == ["trial-0000", "trial-0001", "trial-0002"]
    for name, run in runs.items():
        pruned = name == "trial-0001"
        assert run.info.status == "FINISHED" and run.data.tags["status"] == ("pruned" if pruned else "finished")
        assert [m.step for m in client.get_metric_history(run.info.run_id, "metrics/fid")] == ([2, 4] if pruned else [2, 4, 6])
        assert run.data.params["optim.generator.lr"]  # the searched value, as an hyperparameter


def test_two_workers_share_a_postgresql_study_and_one_resumes_a_killed_workers_trial(cli, tiny, tmp_path):
    missing = None if postgres_bin() else "no PostgreSQL server (apt-get install postgresql)"
    if missing is None and not _installed("psycopg"):
        missing = 'no psycopg (pip install "psycopg[binary]", in the [test] extra)'
    if missing:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(missing)
    with throwaway_cluster() as storage:
        sweep, workers = two_workers(cli, tiny, storage, tmp_path, kill=True)
        check_shared_study(storage, sweep, workers, killed=True)


def check_dashboard(storage: str) -> None:
    """`optuna-dashboard STORAGE` serves the study's trials and their reported values (its API, called in-process)."""
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    app = optuna_dashboard.wsgi(storage)

    def get(path: str) -> dict:
        answer, environ = {}, {"PATH_INFO": path}
        setup_testing_defaults(environ)  # a plain GET request, as the dashboard's page sends it
        body = app(environ, lambda status, headers, exc_info=None: answer.update(status=status))
        assert answer["status"].startswith("200"), (path, answer)
        return json.loads(b"".join(body))

    (summary,) = get("/api/studies")["study_summaries"]
    trials = get(f"/api/studies/{summary['study_id']}")["trials"]
    assert len([t for t in trials if t["state"] in ("Complete", "Pruned")]) == N_TRIALS
    assert all(len(t["intermediate_values"]) >= 2 for t in trials if t["state"] in ("Complete", "Pruned"))


# ------------------------------------------------------------------ pruning through the run's clean early stop
DDP_PRUNE = """
import json, sys
import gantrain.cli
from gantrain.cli.torchrun import session
from gantrain.training import distributed
from gantrain.config.build import build_trainer
from hydra import compose, initialize_config_module
with session(), initialize_config_module("gantrain.configs", version_base="1.3"):
    calls = []
    cfg = compose("config", overrides=sys.argv[1:])
    trainer = build_trainer(cfg, "run", report=lambda step, value: calls.append(step) or step >= 4)
    trainer.fit()
    json.dump({"step": trainer.step, "calls": calls}, open(f"rank{distributed.rank()}.json", "w"))
"""


def test_a_pruned_run_ends_cleanly_and_under_ddp_rank_0_reports_and_every_rank_stops(cli, tiny, tmp_path):
    """The report callback the search passes (here: prune at step 4) ends a 2-rank run at step 4 on both ranks, through
    the clean early stop; rank 0 alone evaluates, so it alone reports."""
    proc = cli.run_ranks(2, "-c", DDP_PRUNE, *tiny, *QUICK_EVAL, "trainer.max_steps=8", cwd=tmp_path,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks == [{"step": 4, "calls": [2, 4]}, {"step": 4, "calls": []}]
    run = tmp_path / "run"  # ended the clean way: summary, last checkpoint, grids
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "pruned" and summary["steps"] == 4
    assert summary["reason"].startswith("pruned by the search at step 4")
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["step"] == 4
    assert (run / "final.png").is_file() and (run / "checkpoints" / "best.pt").is_file()


# ------------------------------------------------------------------ the study's parts
def test_the_search_space_syntax_becomes_optuna_distributions():
    space, fixed = search_space(["optim.lr=tag(log, interval(1e-5, 1e-3))", "trainer.n_critic=int(interval(1, 5))",
                                 "loss=choice(bce, lsgan)", "model.ema=0,0.999", "trainer.batch_size=range(16, 80, 16)",
                                 "optim.beta1=range(0.0, 0.6, 0.25)", "seed=3", "+extra=1"])
    assert space == {"optim.lr": FloatDistribution(1e-5, 1e-3, log=True), "trainer.n_critic": IntDistribution(1, 5),
                     "loss": CategoricalDistribution(["bce", "lsgan"]), "model.ema": CategoricalDistribution([0, 0.999]),
                     "trainer.batch_size": IntDistribution(16, 64, step=16),
                     "optim.beta1": FloatDistribution(0.0, 0.5, step=0.25)}
    assert fixed == ["seed=3", "+extra=1"]
    with pytest.raises(UserError, match=r"optim.lr=interval\(1e-3, 1e-5\)"):
        search_space(["optim.lr=interval(1e-3, 1e-5)"])


def objective(trial: optuna.Trial) -> float:
    return (trial.params["x"] - 0.3) ** 2 + (0.1 if trial.params["loss"] == "bce" else 0)


SPACE = {"x": FloatDistribution(0, 1), "loss": CategoricalDistribution(["bce", "hinge"])}


def test_a_search_continued_after_its_worker_stopped_asks_the_same_trials(tmp_path):
    """SeededTPESampler: the draws depend on the seed and the trials ended so far, so a worker stopped in its third
    trial (the trial failed and queued again, as a stop does) and started again asks what one that ran through asked."""
    def search(name: str, stop_at: int | None) -> list:
        storage = studies.open_storage(f"sqlite:///{tmp_path / name}.db", None, None)
        make = lambda: optuna.create_study(study_name="s", storage=storage, load_if_exists=True,  # noqa: E731
                                           sampler=studies.SeededTPESampler(seed=7, n_startup_trials=2))
        study = make()
        for n in range(6):
            trial = study.ask(SPACE)
            if n == stop_at:
                studies.fail_and_retry(study, trial)
                study = make()  # a new worker: a sampler with fresh random state
                trial = study.ask(SPACE)
                assert trial.params == study.get_trials()[n].params  # the stopped trial comes back first
            study.tell(trial, objective(trial))
        return [t.params for t in study.get_trials(states=(TrialState.COMPLETE,))]

    straight = search("straight", None)
    assert search("stopped", 2) == straight and len({p["x"] for p in straight}) == 6


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "configs" / "hydra" / "sweeper" / "pruner").glob("*.yaml")))
def test_every_pruner_config_instantiates(name):
    from hydra import compose, initialize_config_module

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", overrides=["hydra/sweeper=search", f"hydra/sweeper/pruner={name}"], return_hydra_config=True)
    assert isinstance(instantiate(cfg.hydra.sweeper.pruner), optuna.pruners.BasePruner)


def test_the_default_pruner_stops_a_poor_trial_after_patience_not_a_good_one(compose):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = hydra_compose("config", overrides=["hydra/sweeper=search"], return_hydra_config=True)
    study = optuna.create_study(pruner=instantiate(cfg.hydra.sweeper.pruner))
    for n in range(5):  # five finished trials: the median at every step is 10
        study.add_trial(optuna.trial.create_trial(value=10.0, intermediate_values={1: 10.0, 2: 10.0, 3: 10.0}))
    poor, good = study.ask(), study.ask()
    verdicts = []
    for step, (bad, fine) in enumerate([(20.0, 9.0), (21.0, 8.0), (22.0, 7.0)], 1):
        poor.report(bad, step)
        good.report(fine, step)
        verdicts.append((poor.should_prune(), good.should_prune()))
    assert verdicts == [(False, False), (False, False), (True, False)]
    # patience 1: judged once two evaluations follow the best; pruned then, as worse than the median


# ------------------------------------------------------------------ the dependency set
def _installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def test_the_sweep_test_and_mlflow_extras_are_installed_consistently():
    """With [test] (which brings [sweep]'s Optuna, [mlflow], optuna-dashboard and psycopg), what `pip check` checks holds
    for everything those extras install: each distribution's requirements (markers evaluated) are installed in versions
    they accept. Checked here through importlib.metadata, for gantrain's own closure only (`pip check` itself takes
    seconds, and reports leftovers of other projects, such as an old hydra-optuna-sweeper). Elsewhere (a machine still
    on an older set) the test says what is missing."""
    wanted = [Requirement(r) for r in requires("gantrain") or [] if re.search(r"extra == .(test|sweep|mlflow).", r)]
    unmet = [str(r) for r in wanted if not _installed(r.name) or not r.specifier.contains(distribution(r.name).version,
                                                                                          prereleases=True)]
    if unmet:
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(
            f"gantrain's extras are not installed here ({', '.join(unmet)}): pip install -e '.[test]'")
    broken = [f"{name} needs {r}" for name in closure([r.name for r in wanted]) for r in needs(name)
              if not _installed(r.name) or not r.specifier.contains(distribution(r.name).version, prereleases=True)]
    assert not broken, broken


def needs(name: str) -> list[Requirement]:
    """A distribution's requirements that apply here (no extra, markers true), as pip check reads them."""
    found = []
    for text in requires(name) or []:
        r = Requirement(text)
        if r.marker is None or r.marker.evaluate({"extra": ""}):
            found.append(r)
    return found


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(names: list[str]) -> set[str]:
    """The distributions these need, recursively (what their extras install)."""
    seen, todo = set(), list(names)
    while todo:
        name = normal(todo.pop())
        if name in seen or not _installed(name):
            continue
        seen.add(name)
        todo += [r.name for r in needs(name)]
    return seen
