"""logger=mlflow: a run's scalars, grids, hyperparameters and summary in a real MLflow store, read back with MLflow's own
client; a resumed run continues its MLflow run. Two processes writing to one store: tests/unit/search/test_workers.py
(the search workers of its journal-file test log to MLflow)."""

import importlib.util

import pytest

from gantrain.config.build import build_trainer

# MLflow is imported by the tests that run, not when the suite is collected (2 s in every pytest-xdist worker)
pytestmark = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="MLflow is not installed")

# logger.store_dir follows the Hydra job the process runs; in-process runs of other tests may have left one behind
MLFLOW = ("logger=mlflow", "logger.store_dir=null")
EVAL = ("trainer.eval_every=2", "metrics.num_samples=64", "metrics.real_samples=128", "metrics.classifier_epochs=1",
        "metrics.metrics=[fid]")


def only_run(store) -> tuple:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store / 'mlflow.db'}")
    runs = [run for experiment in client.search_experiments() for run in client.search_runs([experiment.experiment_id])]
    assert len(runs) == 1, runs
    return client, runs[0]


def steps(client, run, key: str) -> list[int]:
    return [m.step for m in client.get_metric_history(run.info.run_id, key)]


def test_a_run_logs_to_mlflow_and_its_resumed_session_continues_the_same_mlflow_run(compose, tiny, tmp_path,
                                                                                   mlflow_store):
    run_dir = mlflow_store(tmp_path / "run")
    build_trainer(compose(*tiny, *EVAL, *MLFLOW), run_dir, hparams={"loss": "hinge", "seed": 0}).fit()
    client, run = only_run(run_dir)
    assert run.info.status == "FINISHED" and run.data.tags["status"] == "finished"
    assert run.data.params == {"loss": "hinge", "seed": "0"}
    assert {"loss/D", "loss/G", "D_x_", "perf/images_per_sec", "metrics/fid", "summary/best_fid"} <= set(run.data.metrics)
    assert run.data.metrics["summary/steps"] == 4 and steps(client, run, "loss/D") == [2, 4]
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    assert artifacts == ["samples/real.png", "samples/samples_0000002.png", "samples/samples_0000004.png"]
    assert "final.png" in [a.path for a in client.list_artifacts(run.info.run_id)]
    assert (run_dir / "final.png").is_file() and (run_dir / "progress.gif").is_file()  # the run folder's pictures too

    build_trainer(compose(*tiny, *EVAL, *MLFLOW, "trainer.max_steps=6", f"trainer.resume={run_dir}"),
                  run_dir).fit()
    client, again = only_run(run_dir)  # the same MLflow run, not a second one
    assert again.info.run_id == run.info.run_id and again.info.status == "FINISHED"
    assert steps(client, again, "loss/D") == [2, 4, 6] and again.data.metrics["summary/steps"] == 6
