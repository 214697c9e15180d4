"""A search worker, as a Hydra sweeper: ask the study for a trial, run it as one Hydra job (its own run folder,
its evaluations reported to the trial, pruned through the run's clean early stop), tell the result, and go on
until the study holds `n_trials` finished (completed or pruned) trials.

`gantrain-search` and `gantrain -m hydra/sweeper=search` run this loop. Several of them against one storage share
the study: each asks when it is free, so a pruned trial frees its worker at once. With `n_jobs` > 1 (and a
parallel launcher) one worker asks that many trials at a time and waits for the batch, as Hydra's sweepers do.
Under torchrun, rank 0 talks to the study and every rank trains the trial it was given.
"""

import logging
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from omegaconf import DictConfig
from optuna.trial import TrialState

from gantrain.errors import UserError, first_line
from gantrain.search import study as studies
from gantrain.search.space import as_overrides, search_space
from gantrain.training import distributed
from gantrain.training.summary import read_summary

log = logging.getLogger("gantrain")


class SearchWorker:
    """The loop behind hydra_plugins.gantrain_search.SearchSweeper (configs/hydra/sweeper/search.yaml)."""

    def __init__(self, direction: str, study_name: str, storage: str, n_trials: int, n_jobs: int = 1,
                 sampler=None, pruner=None, params: DictConfig | None = None, heartbeat_interval: int | None = 60,
                 grace_period: int | None = 180):
        self.direction, self.study_name, self.storage_url = direction, study_name, str(storage)
        self.n_trials, self.n_jobs, self.sampler, self.pruner = int(n_trials), int(n_jobs), sampler, pruner
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.job_idx, self.failures, self.seen = 0, 0, None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = Path(str(config.hydra.sweep.dir))

    def sweep(self, arguments: list[str]) -> None:
        space, fixed = self.space(arguments)
        study = self.open_study() if distributed.is_main() else None
        while True:
            batch = self.next_batch(study, space) if distributed.is_main() else None
            jobs = distributed.broadcast_from_main(batch and [overrides for _, overrides in batch])
            if jobs is None:
                break
            trials = [trial for trial, _ in batch] if batch else []
            with studies.heartbeats(self.storage, trials) if study else nullcontext():
                try:
                    returns = self.launcher.launch([fixed + overrides for overrides in jobs], self.job_idx)
                except BaseException:  # stopped (Ctrl-C, SIGTERM): the trials are queued again, to resume
                    for trial in trials:
                        studies.fail_and_retry(study, trial)
                    raise
            self.job_idx += len(jobs)
            for trial, ret in zip(trials, returns):
                self.tell(study, trial, ret)
        if study is not None:
            self.log_best(study)

    def space(self, arguments: list[str]) -> tuple[dict, list[str]]:
        """The searched keys (hydra.sweeper.params, then the command line's sweeps) and the fixed overrides; a key the
        command line fixes is not searched."""
        space, _ = search_space(as_overrides(self.params))
        searched, fixed = search_space(arguments)
        space |= searched
        for override in fixed:
            space.pop(override.split("=", 1)[0].lstrip("+~"), None)
        if not space:
            raise UserError("the search has nothing to search: give a space such as 'optim.lr=tag(log, interval(1e-5, "
                            "1e-3))' or 'loss=choice(bce, lsgan)', or use hydra/sweeper=gan_search")
        return space, fixed

    def open_study(self) -> optuna.Study:
        for attempt in range(3):  # workers started together may race to create the tables of a new database
            try:
                self.storage = studies.open_storage(self.storage_url, self.heartbeat_interval, self.grace_period)
                study = optuna.create_study(study_name=self.study_name, storage=self.storage, sampler=self.sampler,
                                            pruner=self.pruner, direction=self.direction, load_if_exists=True)
                break
            except Exception as err:  # noqa: BLE001  (the third attempt raises it)
                if attempt == 2:
                    raise UserError(f"hydra.sweeper.storage={self.storage_url}: {first_line(err)}") from None
                time.sleep(1 + attempt)
        studies.recover_dead_workers(study)
        return study

    def next_batch(self, study: optuna.Study, space: dict) -> list[tuple[optuna.Trial, list[str]]] | None:
        """The next trials to run here, with their overrides; None when this worker is done."""
        while True:
            studies.fail_stale_trials(study, self.storage)  # trials of dead workers, queued again to be resumed
            finished = studies.count(study, *studies.FINISHED)
            running = studies.count(study, TrialState.RUNNING)
            free = self.n_trials - finished - running
            if (finished, running) != self.seen:  # said once per change, not at every look while waiting
                self.seen = (finished, running)
                log.info("study %s: %d of n_trials=%d trials finished, %d running, %d to go", self.study_name,
                         finished, self.n_trials, running, max(free, 0))
            if finished >= self.n_trials or self.failures >= self.n_trials:
                if self.failures >= self.n_trials:
                    log.error("%d trials failed here: stopping (their FAILED files say why)", self.failures)
                return None
            if free > 0:
                return [self.ask(study, space) for _ in range(min(self.n_jobs, free))]
            if not studies.has_heartbeat(self.storage):  # the running trials are other workers' (none notices a dead one)
                return None
            time.sleep(min(self.heartbeat_interval, 5))  # until one finishes, or its worker's heartbeat stops

    def ask(self, study: optuna.Study, space: dict) -> tuple[optuna.Trial, list[str]]:
        with warnings.catch_warnings():  # Optuna warns that heartbeats are meant for Study.optimize: this loop beats them
            warnings.filterwarnings("ignore", "Heartbeat of storage")
            trial = study.ask(space)  # a trial queued again (a dead worker's) comes first, with its parameters
        folder = trial.user_attrs.get(studies.FOLDER) or f"trial-{trial.number:04d}"
        trial.set_user_attr(studies.FOLDER, folder)
        trial.set_user_attr(studies.OWNER, studies.this_worker())
        return trial, [*as_overrides(trial.params), f"hydra.sweep.subdir={folder}"]

    def tell(self, study: optuna.Study, trial: optuna.Trial, ret) -> None:
        """The run's result: pruned (its summary says so), its objective, or failed (no value)."""
        folder = self.sweep_dir / trial.user_attrs[studies.FOLDER]
        status = (read_summary(folder) or {}).get("status")
        value = ret.return_value if ret.status == JobStatus.COMPLETED else None
        if status == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif value is None or math.isnan(value):
            self.failures += 1
            study.tell(trial, state=TrialState.FAIL)
        else:
            study.tell(trial, value)
        log.info("trial %d (%s): %s", trial.number, folder.name, status or "failed")

    def log_best(self, study: optuna.Study) -> None:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if done:
            best = study.best_trial
            log.info("Best value: %s, trial %d (%s): %s", best.value, best.number, best.user_attrs.get(studies.FOLDER),
                     " ".join(as_overrides(best.params)))
