"""A run's numbers and pictures in an MLflow tracking store (logger=mlflow, logger=tensorboard_mlflow): the same
scalars, sample grids (as image artifacts), hyperparameters (as params) and, at the end, the summary's numbers, in one
MLflow run per gantrain run. A resumed run continues its MLflow run: the run's id is kept in the run folder
(mlflow_run.json).

The store: `tracking_uri` when given (a server, a database); otherwise a SQLite file, mlflow.db, beside the run:
in the run folder for one run, in `store_dir` (the sweep's or search's folder) for the runs of a sweep, which then
share one store and one experiment. Several workers write to one SQLite file; SQLite lets one writer in at a time,
and a write that finds it busy waits and tries again.
"""

import json
import logging
import re
import time
from pathlib import Path

from torch import Tensor

from gantrain.training.loggers import RunLogger, picture_of, to_pil

log = logging.getLogger(__name__)
RUN_FILE = "mlflow_run.json"


def mlflow_name(key: str) -> str:
    """A metric or param name MLflow accepts: TensorBoard's tag with what MLflow refuses as `_` ("D(x)" -> "D_x_")."""
    return re.sub(r"[^\w\-. :/]", "_", key)


class MlflowLogger:
    def __init__(self, run_dir: str | Path, purge_step: int | None = None, tracking_uri: str | None = None,
                 experiment: str | None = None, store_dir: str | None = None, files: bool = True):
        from mlflow.tracking import MlflowClient  # imported only by runs that log to MLflow (pip install "gantrain[mlflow]")

        self.run_dir = Path(run_dir)
        # files: the run folder's samples/*.png, final.png and progress.gif too (logger=mlflow alone has no other logger)
        self.files = RunLogger(run_dir, png=True, gif=True, tensorboard=False) if files else None
        self.reference_points: Tensor | None = None
        store = Path(store_dir or self.run_dir).absolute()
        self.tracking_uri = tracking_uri or f"sqlite:///{store / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.tracking_uri)
        self.last_grid: Tensor | None = None
        saved = self.run_dir / RUN_FILE
        if purge_step is not None and saved.is_file():  # resumed: the same MLflow run goes on
            self.run_id = json.loads(saved.read_text())["run_id"]
            self.write(self.client.update_run, self.run_id, status="RUNNING")
            return
        name = experiment or (str(store) if store_dir else "gantrain")
        experiment_id = self.write(self.experiment_id, name, (store / "mlartifacts").as_uri())
        self.run_id = self.write(self.client.create_run, experiment_id, run_name=self.run_dir.name).info.run_id
        saved.parent.mkdir(parents=True, exist_ok=True)
        saved.write_text(json.dumps({"tracking_uri": self.tracking_uri, "run_id": self.run_id}) + "\n")

    def experiment_id(self, name: str, artifacts: str) -> str:
        """The experiment's id, made when this is its first run (workers starting together may race to make it)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return self.client.create_experiment(name, artifact_location=artifacts)
            except MlflowException:  # another worker made it first
                found = self.client.get_experiment_by_name(name)
        return found.experiment_id

    @staticmethod
    def write(call, *args, **kwargs):
        """A call to the store, tried again while another process holds the SQLite file's lock."""
        for attempt in range(20):
            try:
                return call(*args, **kwargs)
            except Exception as err:  # noqa: BLE001  (MLflow wraps the driver's OperationalError its own ways)
                if "locked" not in str(err) or attempt == 19:
                    raise
                time.sleep(0.25)

    def scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.write(self.client.log_batch, self.run_id,
                   metrics=[Metric(mlflow_name(key), float(value), now, step) for key, value in values.items()])

    def grid(self, tag: str, samples: Tensor, step: int) -> Tensor:
        if samples.ndim == 2 and tag == "real":
            self.reference_points = samples.detach().float().cpu()
        picture = self.files.grid(tag, samples, step) if self.files else \
            picture_of(samples.detach().float().cpu(), self.reference_points)  # (3, H, W) float in [0, 1]
        name = "real.png" if tag == "real" else f"{tag}_{step:07d}.png"
        self.write(self.client.log_image, self.run_id, to_pil(picture), artifact_file=f"samples/{name}")
        if tag != "real":
            self.last_grid = picture
        return picture

    def hparams(self, params: dict, metrics: dict[str, float]) -> None:
        from mlflow.entities import Param

        # MLflow params are strings of at most 6,000 characters
        self.write(self.client.log_batch, self.run_id, params=[Param(mlflow_name(k), str(v)[:6000]) for k, v in params.items()])

    def finish(self, summary: dict | None = None) -> None:
        """The summary's numbers (best value, time, speed) as metrics and its status as a tag; the run is ended."""
        if summary:
            numbers = {f"summary/{k}": summary[k] for k in ("steps", "wall_seconds", "train_seconds", "images_per_sec")}
            if summary.get("best"):
                numbers[f"summary/best_{summary['best']['metric']}"] = summary["best"]["value"]
            self.scalars(numbers, summary["steps"])
            self.write(self.client.set_tag, self.run_id, "status", summary["status"])
        if self.last_grid is not None:
            self.write(self.client.log_image, self.run_id, to_pil(self.last_grid), artifact_file="final.png")
        if self.files:
            self.files.finish(summary)
        self.write(self.client.set_terminated, self.run_id, status="FINISHED")

    def close(self) -> None:
        """A run stopped before its end (interrupted, failed): KILLED until it is resumed."""
        if self.files:
            self.files.close()
        self.write(self.client.set_terminated, self.run_id, status="KILLED")
