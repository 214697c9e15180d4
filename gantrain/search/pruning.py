"""A search trial's side of pruning: the run reports each evaluation to its trial and asks the study's pruner whether
to stop. The Trainer only sees `report(step, value) -> stop?` (training/ knows nothing of Optuna)."""

import math
from collections.abc import Callable

import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from gantrain.config.build import instantiate
from gantrain.search import SWEEPER
from gantrain.search import study as studies

class TrialReport:
    """report(step, value) for the run in `folder`: the study's running trial of that folder is found at the first
    evaluation (a run that never evaluates never connects)."""

    def __init__(self, storage: str, study_name: str, folder: str, make_pruner: Callable[[], optuna.pruners.BasePruner]):
        self.storage, self.study_name, self.folder, self.make_pruner = storage, study_name, folder, make_pruner
        self.trial: optuna.Trial | None = None

    def __call__(self, step: int, value: float) -> bool:
        trial = self.trial or self.find_trial()
        if value is None or not math.isfinite(value):
            return False  # a diverging run is stopped by the Trainer's own NaN watch, with its own status
        trial.report(float(value), step)
        return trial.should_prune()

    def find_trial(self) -> optuna.Trial:
        # the worker beats the heartbeat; this connection only reports
        storage = studies.open_storage(self.storage, heartbeat_interval=None, grace_period=None)
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=self.make_pruner())
        mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if t.user_attrs.get(studies.FOLDER) == self.folder]
        if len(mine) != 1:
            raise RuntimeError(f"the study {self.study_name} has {len(mine)} running trials for {self.folder}, not 1")
        self.trial = optuna.Trial(study, mine[0]._trial_id)
        return self.trial


def trial_report(sweeper: DictConfig, run_dir: str) -> TrialReport:
    """The report callback of a run that is a search trial (hydra/sweeper=search)."""
    assert sweeper.get("_target_") == SWEEPER
    return TrialReport(str(sweeper.storage), str(sweeper.study_name), str(run_dir).rstrip("/").rsplit("/", 1)[-1],
                       lambda: instantiate(sweeper.pruner))
