"""Under torchrun with the gloo backend on the CPU: a non-finite loss seen by one rank only is decided on by all
ranks together (2 ranks started as torchrun would, forked from the warm interpreter). The rank's D loss is made NaN
(its gradients left finite, so DDP's gradient all-reduce spreads nothing) by scripts/gpu_check.py's --nan-on-rank
entry, which the GPU check runs with NCCL."""

import os
import subprocess

import pytest
from support import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
TINY = ["trainer=debug", "model.generator.width=8", "model.discriminator.width=8", "trainer.max_steps=4", "model.ema=null", "model.ada=null", "loss.r1=0"]  # the plain tiny GAN (conftest.TINY)


@pytest.fixture
def nan_on_rank_1(cli, tmp_path):
    def launch(policy: str) -> subprocess.CompletedProcess:
        """2 ranks; rank 1's D loss is NaN at step 1 (watched from step 2: log, grid and checkpoint every 2 steps)."""
        return cli.run_ranks(2, str(SCRIPT), "--nan-on-rank", "1", "--nan-at-step", "1", "--", *TINY,
                             f"trainer.nan_policy={policy}", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env=ENV)
    return launch


def test_with_nan_policy_skip_all_ranks_skip_together(nan_on_rank_1):
    proc = nan_on_rank_1("skip")
    assert proc.returncode == 0, proc.stderr
    assert "weights identical on 2 ranks" in proc.stdout + proc.stderr  # before the fix: DIFFER, for good


def test_with_nan_policy_stop_every_rank_stops_before_rank_0_writes_anything_of_it(nan_on_rank_1, tmp_path):
    proc = nan_on_rank_1("stop")
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    # before the fix only rank 1 stopped; rank 0 wrote step 2's grid and checkpoint, then lost its peer
    assert output.count("gantrain: error: the loss became NaN or infinite at step 2") == 2, output[-3000:]
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step_*.pt"))
    assert checkpoints == []
