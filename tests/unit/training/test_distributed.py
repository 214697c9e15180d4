"""torchrun with the gloo backend on the CPU: 2 processes train one model, rank 0 writes everything. The first
run goes through real torchrun; the others start their 2 ranks as torchrun would, forked from the warm interpreter
(`cli.run_ranks`), which saves three fresh interpreters a launch."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from gantrain.data.toy import gaussian2d
from gantrain.training.checkpoint import load_checkpoint

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}


def torchrun(cli, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node=2 -m gantrain ARGS` (torchrun's own module, `python -m
    torch.distributed.run`, run by the warm command server; it starts its 2 workers as fresh interpreters)."""
    return cli.run("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "gantrain", *args, cwd=cwd,
                   env=ENV)


@pytest.fixture(scope="module")
def two_process_run(cli, tiny, tmp_path_factory):
    """6 steps of the tiny GAN trained by 2 processes, checkpointed every 2 steps: (its folder, the launch)."""
    cwd = tmp_path_factory.mktemp("ddp")
    return cwd, torchrun(cli, cwd, *tiny, "trainer.max_steps=6", f"hydra.run.dir={cwd / 'run'}")


def test_two_processes_train_one_model_and_write_once(two_process_run):
    tmp_path, proc = two_process_run
    run_dir = tmp_path / "run"
    assert proc.returncode == 0, proc.stderr
    log = proc.stdout + proc.stderr
    assert "weights identical on 2 ranks" in log
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # only rank 0 logs
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.pt", "step_0000002.pt", "step_0000004.pt", "step_0000006.pt"]
    assert load_checkpoint(run_dir)["step"] == 6
    assert not list(tmp_path.glob("outputs"))  # no rank made a run directory of its own


def test_a_checkpoint_resumes_at_any_world_size(cli, two_process_run, tmp_path):
    first = two_process_run[1]
    assert first.returncode == 0, first.stderr
    run_dir = shutil.copytree(two_process_run[0] / "run", tmp_path / "run")  # saved by 2 processes at step 6
    one = cli.run("gantrain", f"trainer.resume={run_dir}", "trainer.max_steps=8", cwd=tmp_path, env=ENV)  # 1 process
    assert one.returncode == 0, one.stderr
    # ... and on 2 ranks again, accumulating 2 micro-batches a step: the ranks must still all-reduce every gradient
    two = cli.run_ranks(2, "gantrain", f"trainer.resume={run_dir}", "trainer.max_steps=10", "trainer.grad_accum=2",
                        cwd=tmp_path, env=ENV)
    assert two.returncode == 0, two.stderr
    assert load_checkpoint(run_dir)["step"] == 10 and "weights identical on 2 ranks" in two.stdout + two.stderr


def test_ranks_train_on_disjoint_shards():
    data = gaussian2d(n=100)
    cpu = torch.device("cpu")
    shards = [data.batches(10, seed=3, device=cpu, rank=r, world=2) for r in range(2)]
    seen = [torch.cat([next(s)["real"] for _ in range(5)]) for s in shards]  # one epoch: 5 steps of 2 x 10
    rows = {tuple(p.tolist()) for p in torch.cat(seen)}
    assert len(rows) == 100  # every point once, none twice
    assert next(shards[0])["real"].shape == (10, 2)  # the next epoch goes on


def test_sync_bn_on_cpu_is_refused_in_one_line(cli, tiny, tmp_path):
    proc = cli.run_ranks(2, "gantrain", *tiny, "trainer.sync_bn=true", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                         env=ENV)
    assert proc.returncode != 0
    assert "gantrain: error: trainer.sync_bn=true needs CUDA devices" in proc.stderr
