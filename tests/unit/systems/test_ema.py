"""The EMA of G: standing BatchNorm statistics of the averaged weights before it samples, exact resume, and
the study that chose them (scripts/ema_bn_study.py) smoke-run on tiny data."""

import copy

import pytest
import torch
from support import REPO
from torch import nn

from gantrain.config.build import system_from_checkpoint
from gantrain.systems.ema import EMA, STANDING_BATCHES, standing_statistics
from gantrain.training.checkpoint import load_checkpoint


class Shift(nn.Module):
    """G = BatchNorm1d(1) of its input plus a learnt shift: its standing statistics are those of its inputs."""

    def __init__(self):
        super().__init__()
        self.shift, self.norm = nn.Parameter(torch.zeros(1)), nn.BatchNorm1d(1)

    def forward(self, z):
        return self.norm(z + self.shift)


def draw(network, generator, n):
    return network(torch.randn(n, 1, generator=generator) * 3 + 2)


def test_standing_statistics_by_hand():
    """The cumulative average over the batches: the mean of the batch means, the mean of the unbiased
    batch variances; from a local generator, so the global random stream is untouched."""
    net = Shift()
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    standing_statistics(net, draw, batches=3, batch_size=50, seed=7)
    assert torch.equal(torch.rand(1), before)
    g = torch.Generator().manual_seed(7)
    batches = [torch.randn(50, 1, generator=g) * 3 + 2 for _ in range(3)]
    assert torch.allclose(net.norm.running_mean, torch.stack([b.mean() for b in batches]).mean().reshape(1))
    assert torch.allclose(net.norm.running_var, torch.stack([b.var() for b in batches]).mean().reshape(1))
    assert net.norm.momentum == 0.1 and net.norm.num_batches_tracked.item() == 3
    again = Shift()
    standing_statistics(again, draw, batches=3, batch_size=50, seed=7)
    assert torch.equal(again.norm.running_var, net.norm.running_var)  # deterministic


def test_ema_refreshes_once_per_update_and_after_loading():
    net = Shift()
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.shift.fill_(4.0)
        net.norm.running_mean.fill_(-1.0)  # G's statistics: copied by update, never sampled with
    ema.update(net, step=1)
    assert torch.equal(ema.network.norm.running_mean, net.norm.running_mean) and not ema.fresh
    calls = []
    counting = lambda network, generator, n: calls.append(n) or draw(network, generator, n)
    ema.refresh(counting)
    assert len(calls) == STANDING_BATCHES and ema.fresh and not ema.network.training
    # the averaged shift is 2 and the inputs have mean 2: the standing mean is near 4, G's copied one was -1
    assert abs(ema.network.norm.running_mean.item() - 4.0) < 0.5
    ema.refresh(counting)
    assert len(calls) == STANDING_BATCHES  # nothing new to compute
    ema.load_state_dict(ema.state_dict())
    assert not ema.fresh  # a loaded EMA recomputes its statistics before it samples


def test_before_its_start_the_ema_is_a_copy_and_samples_with_the_networks_statistics():
    net, calls = Shift(), []
    ema = EMA(net, decay=0.5, start=2)
    counting = lambda network, generator, n: calls.append(n) or draw(network, generator, n)
    for step in (1, 2):
        ema.update(net, step=step)
        ema.refresh(counting)
        assert calls == [] and ema.fresh  # the copy's statistics are G's, which fit its weights
    ema.update(net, step=3)  # averaged from here on
    ema.refresh(counting)
    assert len(calls) == STANDING_BATCHES


class Scaled(nn.Module):
    """A network without BatchNorm but with a buffer of its own (and a LayerNorm, which holds none)."""

    def __init__(self):
        super().__init__()
        self.linear, self.norm = nn.Linear(3, 3), nn.LayerNorm(3)
        self.register_buffer("scale", torch.ones(3))

    def forward(self, x):
        return self.norm(self.linear(x)) * self.scale


def test_a_network_without_batch_norm_is_unaffected():
    """Weights averaged, buffers copied, and no standing statistics to compute (no forward at all)."""
    net = Scaled()
    ema = EMA(net, decay=0.8, start=0)
    before = [p.clone() for p in ema.network.parameters()]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        net.scale.fill_(5.0)
    ema.update(net, step=1)
    for p_ema, p_before, p_net in zip(ema.network.parameters(), before, net.parameters()):
        assert torch.allclose(p_ema, 0.8 * p_before + 0.2 * p_net)
    assert torch.equal(ema.network.scale, net.scale)
    ema.refresh(lambda *args: pytest.fail("a network without BatchNorm has no statistics to recompute"))
    assert ema.fresh and torch.equal(ema.network.scale, net.scale)


# NCHW: the bitwise comparisons below include a reloaded (NCHW) copy, and NHWC convolutions round differently
EMA_FROM_STEP_1 = ("model.ema=0.9", "model.ema_start=1", "trainer.channels_last=false")  # with the tiny settings


def test_ema_resumes_bitwise_and_samples_with_its_own_statistics(train, tmp_path):
    """A straight run with grids (so standing statistics) at steps 3 and 4 against one split in two at a
    checkpoint, with grids at steps 2 and 4: standing statistics touch no random stream."""
    straight = train(*EMA_FROM_STEP_1, "trainer.max_steps=4", "trainer.sample_every=3", run_dir=tmp_path / "straight").system
    train(*EMA_FROM_STEP_1, "trainer.max_steps=2", run_dir=tmp_path / "split")  # step 1 copies G, steps 2-4 average
    resumed = train(*EMA_FROM_STEP_1, "trainer.max_steps=4", f"trainer.resume={tmp_path / 'split'}",
                    run_dir=tmp_path / "split").system
    for name in ("G", "D", "ema"):
        a, b = getattr(straight, name).state_dict(), getattr(resumed, name).state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    ema, g_stats = straight.ema.network, dict(straight.G.named_buffers())
    means = [k for k, _ in ema.named_buffers() if k.endswith("running_mean")]
    assert means and all(not torch.equal(ema.get_buffer(k), g_stats[k]) for k in means)  # not G's
    again = copy.deepcopy(ema)
    standing_statistics(again, straight.draw)
    assert all(torch.equal(x, y) for x, y in zip(again.buffers(), ema.buffers()))  # its own, as sampled
    state = load_checkpoint(tmp_path / "straight")
    state["ema"][f"network.{means[0]}"].fill_(123.0)  # as an old checkpoint holds G's statistics
    loaded = system_from_checkpoint(state)  # what gantrain-sample and gantrain-eval sample from
    loaded.sample(2, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(x, y) for x, y in zip(loaded.ema.network.buffers(), again.buffers()))


def test_the_study_script_runs_on_tiny_data(cli, make_data, tmp_path):
    make_data.mnist(tmp_path / "data", n=64)
    doc = tmp_path / "study.md"
    proc = cli.run(
        REPO / "scripts" / "ema_bn_study.py", "--seeds", "0", "--steps", "2", "--ema-start", "1",
        "--samples", "32", "--standing", "32", "--kid-subsets", "2", "--classifier-epochs", "1",
        "--data", tmp_path / "data", "--out", tmp_path / "out", "--doc", doc, "trainer.batch_size=16", cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = doc.read_text()
    for variant in ("| G |", "EMA + G's BN stats (old)", "EMA + averaged BN (a)", "EMA + standing 32 (b)"):
        assert variant in table
    assert "classifier_epochs" in table and (tmp_path / "out" / "results.json").is_file()
