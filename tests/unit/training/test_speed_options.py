"""Every speed option trains the same model as the plain path, within a tolerance that fits the option."""

import pytest
import torch

from gantrain.config.build import build_system, seed_everything
from gantrain.config.schema import trainer_settings
from gantrain.errors import UserError
from gantrain.training.speed import memory_format

# With the tiny settings. SGD: its update is linear in the gradient, so differences measure the numerics, not
# Adam's sign flips of near-zero gradients (which turn 1e-7 rounding into lr-sized steps)
SPEED = ("trainer.max_steps=3", "trainer.sample_every=100", "trainer.checkpoint_every=100", "optim=sgd", "optim.lr=0.05",
         "trainer.channels_last=false")  # the plain path: NCHW (channels_last=auto would pick NHWC on the CPU)


def relative_difference(a: torch.nn.Module, b: torch.nn.Module, start: dict) -> float:
    """||W_a - W_b|| / ||W_a - W_0|| over all float weights: the runs' disagreement relative to the training."""
    keys = [k for k, w in start.items() if w.is_floating_point()]
    flat = lambda m: torch.cat([m.state_dict()[k].float().flatten() for k in keys])
    w0 = torch.cat([start[k].float().flatten() for k in keys])
    return ((flat(a) - flat(b)).norm() / (flat(a) - w0).norm()).item()


@pytest.fixture(scope="module")
def initial(compose, tiny):
    """G's weights before training, as every run of these settings starts."""
    start = compose(*tiny, *SPEED)
    seed_everything(start.seed)
    return {k: v.clone() for k, v in build_system(start, (1, 32, 32)).G.state_dict().items()}


@pytest.fixture(scope="module")
def plain(train, initial):
    """The plain path's run, the reference of the tests that compare an option with it (they only read it)."""
    torch.manual_seed(0)
    return train(*SPEED), initial


@pytest.mark.parametrize("option, tolerance", [
    ("trainer.channels_last=true", 1e-4),
    ("trainer.fused=true", 1e-4),
])
def test_option_matches_the_plain_path(train, option, tolerance, plain):
    reference, initial = plain
    other = train(*SPEED, option)
    assert relative_difference(reference.system.G, other.system.G, initial) < tolerance


def test_bf16_takes_the_same_first_steps_within_its_precision(train, initial):
    """bf16 keeps 8 bits of mantissa. At initialisation D's gradients agree with fp32 to ~2 % and G's (which
    pass back through D) to ~12 %, and GAN dynamics amplify that over later steps; so one step is compared,
    with a bound that a wrong dtype path (e.g. fp16 overflow, a missing cast) would break."""
    fp32 = train(*SPEED, "trainer.max_steps=1")
    bf16 = train(*SPEED, "trainer.max_steps=1", "trainer.amp=bf16")
    assert 0 < relative_difference(fp32.system.G, bf16.system.G, initial) < 0.25  # 0 would mean amp was ignored


def test_channels_last_really_changes_the_layout(train):
    trainer = train(*SPEED, "trainer.channels_last=true")
    conv = trainer.system.D.main[2].weight  # (16, 8, 4, 4): layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_channels_last_is_on_by_default_for_convolutions_only():
    """auto: NHWC for convolutional networks on the CPU and CUDA (measured faster: scripts/bench_channels_last.py),
    the plain layout for fully connected ones and elsewhere; true and false are obeyed."""
    conv, mlp = [torch.nn.Conv2d(1, 4, 3)], [torch.nn.Linear(4, 4)]
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert memory_format("auto", cpu, conv) is torch.channels_last
    assert memory_format("auto", cuda, conv) is torch.channels_last
    assert memory_format("auto", mps, conv) is torch.contiguous_format
    assert memory_format("auto", cpu, mlp) is torch.contiguous_format
    assert memory_format(False, cpu, conv) is torch.contiguous_format
    assert memory_format("true", cpu, mlp) is torch.channels_last
    with pytest.raises(UserError, match="trainer.channels_last=fast: expected auto, true or false"):
        trainer_settings({"channels_last": "fast"})


def test_fused_adam_is_used_when_asked(train):
    trainer = train(*SPEED, "trainer.fused=true", "optim=adam")
    assert trainer.opt_g.param_groups[0]["fused"] is True


def test_compile_matches_the_plain_path(train, plain):
    reference, initial = plain
    other = train(*SPEED, "trainer.compile=true")
    assert other.system.G._compiled_call_impl is not None and other.system.D._compiled_call_impl is not None  # compiled
    assert relative_difference(reference.system.G, other.system.G, initial) < 1e-4
    assert set(other.system.G.state_dict()) == set(reference.system.G.state_dict())  # checkpoints unchanged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_device_sync_between_logging_steps(train):
    trainer = train(*SPEED, "trainer.device=cuda", "trainer.max_steps=6", "trainer.log_every=100", fit=False)
    trainer.begin()
    trainer.train_step()  # warm-up: lazy allocations may sync once
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.logger.close()


@pytest.mark.parametrize("machine, avx512_bf16, amx, emulated", [
    ("x86_64", False, False, True), ("x86_64", True, False, False), ("x86_64", False, True, False),
    ("aarch64", False, False, False)])
def test_bf16_on_a_cpu_without_bf16_instructions_is_named_slow(monkeypatch, caplog, machine, avx512_bf16, amx,
                                                                emulated):
    from gantrain.config.build import warn_of_slow_bf16
    from gantrain.device import emulates_bf16

    monkeypatch.setattr("platform.machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    assert emulates_bf16(torch.device("cpu")) is emulated
    assert not emulates_bf16(torch.device("meta"))
    warn_of_slow_bf16(trainer_settings({"device": "cpu", "amp": "bf16"}))
    warn_of_slow_bf16(trainer_settings({"device": "cpu", "amp": False}))  # fp32: nothing to say
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == (["trainer.amp=bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so autocast "
                         "emulates them and trains slower than fp32; add trainer.amp=false to train faster here"]
                        if emulated else [])
