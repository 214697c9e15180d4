"""torchrun with the gloo backend on the CPU: 2 processes train one model, rank 0 writes everything."""

import os
import subprocess
from pathlib import Path

import torch

from gantrain.checkpoint import load_checkpoint
from gantrain.data.toy import gaussian2d

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
TINY = ["trainer=debug", "model.generator.width=8", "model.discriminator.width=8"]


def torchrun(tmp_path: Path, nproc: int, *args: str) -> subprocess.CompletedProcess:
    command = ["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", "gantrain", *args] if nproc > 1 else ["gantrain", *args]
    return subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)


def test_two_processes_train_one_model_and_write_once(tmp_path):
    run_dir = tmp_path / "run"
    proc = torchrun(tmp_path, 2, *TINY, "trainer.max_steps=6", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "weights identical on 2 ranks" in log
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # only rank 0 logs
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt", "step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    assert load_checkpoint(run_dir)["step"] == 6
    assert not list(tmp_path.glob("outputs"))  # no rank made a run directory of its own


def test_a_checkpoint_resumes_at_any_world_size(tmp_path):
    run_dir = tmp_path / "run"
    first = torchrun(tmp_path, 2, *TINY, "trainer.max_steps=4", f"hydra.run.dir={run_dir}")
    assert first.returncode == 0, first.stderr
    one = torchrun(tmp_path, 1, f"trainer.resume={run_dir}", "trainer.max_steps=6")
    assert one.returncode == 0, one.stderr
    two = torchrun(tmp_path, 2, f"trainer.resume={run_dir}", "trainer.max_steps=8")
    assert two.returncode == 0, two.stderr
    assert load_checkpoint(run_dir)["step"] == 8 and "weights identical on 2 ranks" in two.stdout + two.stderr


def test_ranks_train_on_disjoint_shards():
    data = gaussian2d(n=100)
    cpu = torch.device("cpu")
    shards = [data.batches(10, seed=3, device=cpu, rank=r, world=2) for r in range(2)]
    seen = [torch.cat([next(s)["real"] for _ in range(5)]) for s in shards]  # one epoch: 5 steps of 2 x 10
    rows = {tuple(p.tolist()) for p in torch.cat(seen)}
    assert len(rows) == 100  # every point once, none twice
    assert next(shards[0])["real"].shape == (10, 2)  # the next epoch goes on


def test_sync_bn_on_cpu_is_refused_in_one_line(tmp_path):
    proc = torchrun(tmp_path, 2, *TINY, "trainer.sync_bn=true", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert "gantrain: error: trainer.sync_bn=true needs CUDA devices" in proc.stderr
