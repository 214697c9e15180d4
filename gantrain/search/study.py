"""The Optuna study a search shares between its workers: where it is stored, how trials are drawn, and how a trial
that lost its worker is handed to another.

Storage: a URL (`sqlite:///...` on one machine, `postgresql://...` or `mysql://...` for many) is an RDB storage with
heartbeats: a running trial whose worker stops beating for `grace_period` seconds is failed by the next worker that
looks, and a copy of it (same parameters, same run folder, its reported values) is queued first, so that worker
resumes it from its checkpoint. Anything else is a journal file (on a shared filesystem for many machines), which
has no heartbeat: see `recover_dead_workers`.
"""

import logging
import os
import socket
import threading
import warnings
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import optuna
from optuna.storages import RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger(__name__)
# PatientPruner, heartbeats and fail_stale_trials carry Optuna's "experimental" label; a search uses them on purpose
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what n_trials counts
FOLDER = "run_folder"  # the trial's user attribute naming its run folder (a retried copy keeps its original's)
OWNER = "worker"       # "host:pid" of the worker that asked it


class SeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random draws depend only on (seed, number of ended trials, the trial's place among those running,
    parameter), not on how many draws earlier invocations made: a search killed and continued asks the same trials,
    in the same order, as one that ran through (one worker), and trials asked while others run (parallel workers)
    get draws of their own. Ended: finished, or failed for good (a trial that lost its worker and was queued again
    does not count, so its resumed copy leaves the sequence as it was)."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.base_seed = 0 if seed is None else seed

    def reseed(self, study: optuna.Study, trial: FrozenTrial, key: str) -> None:
        trials = study.get_trials(deepcopy=False)
        retried = {t.system_attrs.get("retry_of") for t in trials}
        ended = sum(t.state in FINISHED or (t.state == TrialState.FAIL and t.number not in retried) for t in trials)
        running = sorted(t.number for t in trials if t.state == TrialState.RUNNING)
        place = running.index(trial.number) if trial.number in running else 0
        seed = (self.base_seed * 1_000_003 + (ended + place) * 7919 + zlib.crc32(key.encode())) % 2**32
        # TPE draws from its own generator and, for its first trials, from a random sampler's (both optuna's
        # LazyRandomState): reseeded here, before every draw
        self._rng.rng.seed(seed)
        self._random_sampler._rng.rng.seed(seed)

    def sample_relative(self, study, trial, search_space):
        # Optuna 5's TPE draws all parameters together (multivariate) once it has enough trials
        self.reseed(study, trial, " ".join(sorted(search_space)))
        return super().sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        self.reseed(study, trial, param_name)
        return super().sample_independent(study, trial, param_name, param_distribution)


def retry(study: optuna.Study, trial: FrozenTrial) -> None:
    """Queue a copy of a trial that lost its worker: the same parameters and run folder (where its checkpoint is)
    and the values it reported, so the pruner judges the resumed run on its whole curve."""
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k != OWNER},
        system_attrs={"fixed_params": trial.params, "retry_of": trial.number},
        intermediate_values=trial.intermediate_values))


def open_storage(url: str, heartbeat_interval: int | None = 60, grace_period: int | None = 180):
    """An RDB storage with heartbeats for a URL, a journal file for a path (the same string optuna-dashboard takes)."""
    if "://" not in url:
        os.makedirs(os.path.dirname(os.path.abspath(url)), exist_ok=True)
        return JournalStorage(JournalFileBackend(url))
    # SQLite serialises writers: several workers wait their turn (60 s) instead of failing at once (5 s)
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    if url.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(os.path.abspath(url.removeprefix("sqlite:///"))) or ".", exist_ok=True)
    return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                      heartbeat_stale_trial_callback=retry)


def has_heartbeat(storage) -> bool:
    """Whether the storage (as open_storage made it: a study wraps it in a cache) beats heartbeats."""
    return isinstance(storage, RDBStorage) and storage.get_heartbeat_interval() is not None


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def recover_dead_workers(study: optuna.Study) -> None:
    """At a worker's start: trials still running for a worker of this machine that is gone (killed, or the machine
    restarted) are failed and queued again at once. This is the recovery a journal file has (it has no heartbeat),
    and it spares an RDB study the grace period, so one worker run again continues exactly where it stopped."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner_host, _, pid = str(trial.user_attrs.get(OWNER, "")).rpartition(":")
        if owner_host == host and pid.isdigit() and not process_alive(int(pid)):
            log.info("trial %d was left running by a worker that is gone (%s): asking it again", trial.number,
                     trial.user_attrs[OWNER])
            fail_and_retry(study, trial)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return pid != os.getpid()


def fail_and_retry(study: optuna.Study, trial: optuna.Trial | FrozenTrial) -> None:
    """A trial that will not finish here (its worker was stopped): failed, and queued again to resume."""
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    except (RuntimeError, ValueError):  # already finished or failed by another worker (it saw the heartbeat stop)
        return
    retry(study, next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number))


def fail_stale_trials(study: optuna.Study, storage) -> None:
    """Trials whose worker's heartbeat stopped: failed and queued again (the storage's callback, `retry`)."""
    if has_heartbeat(storage):
        optuna.storages.fail_stale_trials(study)


@contextmanager
def heartbeats(storage, trials: list[optuna.Trial]) -> Iterator[None]:
    """While trials train: record their heartbeats from this worker (RDB storages; nothing for a journal file)."""
    if not has_heartbeat(storage) or not trials:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in trials:
                storage.record_heartbeat(trial._trial_id)
            if stop.wait(storage.get_heartbeat_interval()):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))
