"""Hyperparameter search with Hydra's Optuna sweeper (hydra-optuna-sweeper), made resumable.

hydra/sweeper=search (configs/hydra/sweeper/search.yaml) stores the study in SQLite in the sweep
directory and names each trial's run directory by its parameters. Before the sweeper starts, the
ResumableStudy callback makes the same command, run again with the same hydra.sweep.dir, continue:
`n_trials` counts the study's trials in total (finished or pruned; failed ones are replaced), and trials
a killed sweep left running are asked again with the same parameters, so their jobs find the interrupted
run in their directory and resume it (gantrain.cli.continue_sweep_job).
"""

import logging
import zlib
from pathlib import Path

import numpy as np
import optuna
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, read_write

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


class SeededTPESampler(optuna.samplers.TPESampler):
    """TPE whose random draws depend only on (seed, number of finished trials, the trial's place among those
    running, parameter), not on how many draws earlier invocations made: a search killed and continued asks
    the same trials, in the same order, as one that ran through (one trial at a time), and trials asked
    together (parallel jobs) get draws of their own."""

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        self.base_seed = 0 if seed is None else seed

    def sample_independent(self, study, trial, param_name, param_distribution):
        finished = len(study.get_trials(deepcopy=False, states=FINISHED))
        running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
        place = sorted(running).index(trial.number) if trial.number in running else 0
        rng = np.random.RandomState((self.base_seed * 1_000_003 + (finished + place) * 7919
                                     + zlib.crc32(param_name.encode())) % 2**32)
        self._rng = self._random_sampler._rng = rng
        return super().sample_independent(study, trial, param_name, param_distribution)


class ResumableStudy(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweeper = config.hydra.sweeper
        if not sweeper.get("storage"):
            return
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)  # where the SQLite file goes
        directions = list(sweeper.direction) if not isinstance(sweeper.direction, str) else [sweeper.direction]
        study = optuna.create_study(study_name=sweeper.study_name, storage=sweeper.storage, directions=directions,
                                    load_if_exists=True)
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.enqueue_trial(trial.params)  # asked again first: its job resumes the interrupted run
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        remaining = max(int(sweeper.n_trials) - done, 0)
        if done:
            log.info("study %s has %d of n_trials=%d trials: %d to go", sweeper.study_name, done, sweeper.n_trials,
                     remaining)
        with read_write(sweeper):
            sweeper.n_trials = remaining  # the plugin counts trials per invocation; we count the study's
        # each trial's directory is named by a digest of its parameters (the plugin numbers jobs from 0 in every
        # invocation); an override, since each job's config is composed again from the hydra overrides
        with read_write(config.hydra.overrides):
            config.hydra.overrides.hydra.append("hydra.sweep.subdir='${gantrain_trial_dir:${hydra.job.override_dirname}}'")

