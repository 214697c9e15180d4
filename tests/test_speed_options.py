"""Every speed option trains the same model as the plain path, within a tolerance that fits the option."""

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from gantrain.build import build_trainer

# SGD: its update is linear in the gradient, so differences measure the numerics, not Adam's sign flips
# of near-zero gradients (which turn 1e-7 rounding into lr-sized steps)
SMALL = ("trainer=debug", "model.generator.width=8", "model.discriminator.width=8", "trainer.max_steps=3",
         "trainer.sample_every=100", "trainer.checkpoint_every=100", "optim=sgd", "optim.lr=0.05")


def train(run_dir, *overrides):
    cfg = compose_config(*SMALL, *overrides)
    trainer = build_trainer(cfg, run_dir, meta={"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer.fit()
    return trainer


def relative_difference(a: torch.nn.Module, b: torch.nn.Module, start: dict) -> float:
    """||W_a - W_b|| / ||W_a - W_0|| over all float weights: the runs' disagreement relative to the training."""
    keys = [k for k, w in start.items() if w.is_floating_point()]
    flat = lambda m: torch.cat([m.state_dict()[k].float().flatten() for k in keys])
    w0 = torch.cat([start[k].float().flatten() for k in keys])
    return ((flat(a) - flat(b)).norm() / (flat(a) - w0).norm()).item()


@pytest.fixture
def plain(tmp_path):
    torch.manual_seed(0)
    start = compose_config(*SMALL)
    from gantrain.build import build_system, seed_everything

    seed_everything(start.seed)
    initial = {k: v.clone() for k, v in build_system(start, (1, 32, 32)).G.state_dict().items()}
    return train(tmp_path / "plain"), initial


@pytest.mark.parametrize("option, tolerance", [
    ("trainer.channels_last=true", 1e-4),
    ("trainer.fused=true", 1e-4),
])
def test_option_matches_the_plain_path(option, tolerance, plain, tmp_path):
    reference, initial = plain
    other = train(tmp_path / "other", option)
    assert relative_difference(reference.system.G, other.system.G, initial) < tolerance


def test_bf16_takes_the_same_first_steps_within_its_precision(tmp_path):
    """bf16 keeps 8 bits of mantissa. At initialisation D's gradients agree with fp32 to ~2 % and G's (which
    pass back through D) to ~12 %, and GAN dynamics amplify that over later steps; so one step is compared,
    with a bound that a wrong dtype path (e.g. fp16 overflow, a missing cast) would break."""
    from gantrain.build import build_system, seed_everything

    cfg = compose_config(*SMALL)
    seed_everything(cfg.seed)
    initial = {k: v.clone() for k, v in build_system(cfg, (1, 32, 32)).G.state_dict().items()}
    fp32 = train(tmp_path / "fp32", "trainer.max_steps=1")
    bf16 = train(tmp_path / "bf16", "trainer.max_steps=1", "trainer.amp=bf16")
    assert 0 < relative_difference(fp32.system.G, bf16.system.G, initial) < 0.25  # 0 would mean amp was ignored


def test_channels_last_really_changes_the_layout(tmp_path):
    trainer = train(tmp_path, "trainer.channels_last=true")
    conv = trainer.system.D.main[2].weight  # (16, 8, 4, 4): layouts differ
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()


def test_fused_adam_is_used_when_asked(tmp_path):
    trainer = train(tmp_path, "trainer.fused=true", "optim=adam")
    assert trainer.opt_g.param_groups[0]["fused"] is True


def test_compile_matches_the_plain_path(plain, tmp_path):
    reference, initial = plain
    other = train(tmp_path / "compiled", "trainer.compile=true")
    assert other.system.G._compiled_call_impl is not None and other.system.D._compiled_call_impl is not None  # compiled
    assert relative_difference(reference.system.G, other.system.G, initial) < 1e-4
    assert set(other.system.G.state_dict()) == set(reference.system.G.state_dict())  # checkpoints unchanged


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_device_sync_between_logging_steps(tmp_path):
    cfg = compose_config(*SMALL, "trainer.device=cuda", "trainer.max_steps=6", "trainer.log_every=100")
    trainer = build_trainer(cfg, tmp_path, meta={"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer.begin()
    trainer.train_step()  # warm-up: lazy allocations may sync once
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainer.logger.close()
