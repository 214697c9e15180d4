"""Adaptive discriminator augmentation (gantrain/ada.py): p's adaptation, the augmentations, the GAN system's
use of them, checkpoints and exact resume, and the refused settings."""

import io

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gantrain.config.build import build_system
from gantrain.errors import UserError
from gantrain.systems.ada import ADA, color_matrices, geometric_matrices


def ada_at(p: float, ops: str = "blit,geom,color", **kwargs) -> ADA:
    ada = ADA(ops=ops, **kwargs)
    ada.load_state_dict(ada.state_dict() | {"p": torch.tensor(p)})
    return ada


# ------------------------------------------------------------------ p adapts
def test_p_moves_by_the_formula_every_interval_and_stays_in_0_1():
    ada = ADA(target=0.6, kimg=1, interval=3)
    step = 8 * 3 / 1000  # batch 8, 3 D steps, 1 kimg
    for call in range(1, 7):  # D overfits: every real logit positive, r_t = 1 > 0.6
        ada.accumulate(torch.full((8,), 2.0))
        ada.adjust(8)
        assert ada.p.item() == pytest.approx(step * (call // 3), abs=1e-6), call
    assert ada.rt.item() == 1.0 and ada.count.item() == 0 and ada.calls == 0
    for _ in range(3):  # r_t = (2 - 6) / 8 = -0.5 < 0.6: p goes down one step
        ada.accumulate(torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0, -1.0, 0.5, -0.5]).view(8, 1))
        ada.adjust(8)
    assert ada.p.item() == pytest.approx(step, abs=1e-6) and ada.rt.item() == -0.25

    fast = ADA(target=0.6, kimg=0.01, interval=1)  # one step is 0.8: clamped at 1, then at 0
    for sign, expected in ((1, 0.8), (1, 1.0), (-1, 0.2), (-1, 0.0), (-1, 0.0)):
        fast.accumulate(torch.full((8,), float(sign)))
        fast.adjust(8)
        assert fast.p.item() == pytest.approx(expected, abs=1e-6)


# ------------------------------------------------------------------ the augmentations
def test_at_p_0_the_input_comes_back_and_nothing_is_drawn():
    x = torch.randn(4, 3, 8, 8)
    before = torch.get_rng_state()
    assert ADA()(x) is x
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("ops", ["blit", "geom", "color", "blit,geom,color"])
def test_each_group_at_p_1_changes_images_differentiably(ops, channels):
    torch.manual_seed(0)
    x = torch.randn(6, channels, 8, 8, dtype=torch.float64, requires_grad=True)
    y = ada_at(1.0, ops)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert (y - x).flatten(1).abs().amax(1).min() > 1e-3  # every image changed
    y.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_blit_moves_pixels_exactly():
    torch.manual_seed(0)
    x = torch.randperm(64).float().view(1, 1, 8, 8).repeat(32, 1, 1, 1)  # 64 distinct values per image
    y = ada_at(1.0, "blit")(x)
    assert set(y.unique().tolist()) <= set(range(64))  # every pixel a copy of one: no interpolation
    permutations = sum(torch.equal(y[i].flatten().sort().values, x[i].flatten().sort().values) for i in range(32))
    assert permutations >= 4  # those without a translation (reflection at the border repeats pixels otherwise)


def test_p_is_the_fraction_of_images_each_transform_gets():
    torch.manual_seed(0)
    n, p = 20000, torch.tensor(0.5)
    G, geometric = geometric_matrices(n, 8, 8, p, ("blit", "geom"), torch.device("cpu"))
    C, color = color_matrices(n, 3, p, torch.device("cpu"))
    applied = geometric | color
    assert set(applied) == {"xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac", "brightness", "contrast",
                            "lumaflip", "hue", "saturation"}
    for name, mask in applied.items():  # the standard error is 0.0035: 0.03 is over eight of them
        assert abs(mask.float().mean().item() - 0.5) < 0.03, name
    untouched = ~torch.stack(list(geometric.values())).any(0)
    assert torch.allclose(G[untouched], torch.eye(3).expand(int(untouched.sum()), 3, 3), atol=1e-6)
    assert not torch.stack(list(color.values())).any(0).all() and torch.equal(
        C[~torch.stack(list(color.values())).any(0)][0], torch.eye(4))
    assert set(color_matrices(10, 1, p, torch.device("cpu"))[1]) == {"brightness", "contrast"}  # grey images


def test_state_dict_round_trip_restores_p_statistics_and_phase():
    ada = ADA(target=0.6, kimg=1, interval=3)
    for sign in (1, 1, 1, 1, -1):  # one adjustment, then two calls into the next interval
        ada.accumulate(torch.full((4,), float(sign)))
        ada.adjust(4)
    buffer = io.BytesIO()
    torch.save(ada.state_dict(), buffer)
    buffer.seek(0)
    loaded = ADA(target=0.6, kimg=1, interval=3)
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    for name in ("p", "signs", "count", "rt"):
        assert torch.equal(getattr(loaded, name), getattr(ada, name)), name
    assert loaded.calls == ada.calls == 2 and loaded.p.item() > 0 and loaded.count.item() == 8
    assert loaded.probability() == ada.probability() == pytest.approx(0.012)  # the next forward augments again


# ------------------------------------------------------------------ in the GAN system
def test_critic_applies_diffaugment_then_ada_to_real_and_fake(compose, monkeypatch):
    import gantrain.systems.gan as gan

    system = build_system(compose("model.generator.width=8", "model.discriminator.width=8", "model.ada=0.6",
                                  "model.diffaugment=translation", "loss.r1=0"), (1, 32, 32))  # R1 would call D again
    calls = []
    monkeypatch.setattr(gan, "diff_augment", lambda x, policy: calls.append("diffaugment") or x + 1)
    forward = system.ada.forward
    monkeypatch.setattr(system.ada, "forward", lambda x: calls.append(("ada", x.mean().item())) or forward(x))
    _, stats = system.d_loss({"real": torch.zeros(4, 1, 32, 32)})
    system.g_loss({"real": torch.zeros(4, 1, 32, 32)})
    assert calls[0] == "diffaugment" and calls[1] == ("ada", 1.0) and len(calls) == 6  # real, fake; fake in G's step
    assert {"aug/p", "aug/rt"} <= set(stats) and system.ada.count.item() == 4
    assert "ada" in system.checkpoint_modules() and "ada_p 0.000" in system.progress({k: v.item() for k, v in stats.items()})
    system.after_d_step()
    assert system.ada.calls == 1


@pytest.mark.parametrize("override, message", [
    ("model.ada=1.5", "model.ada=1.5: the target of E[sign(D(real))] must be between 0 and 1"),
    ("model.ada=0", "model.ada=0: the target"),
    ("model.ada_kimg=0", "model.ada_kimg=0: must be a positive number"),
    ("model.ada_interval=0", "model.ada_interval=0: must be a positive integer"),
    ("model.ada_ops=[blit,zoom]", "model.ada_ops=['blit', 'zoom']: unknown zoom; use any of blit,geom,color"),
])
def test_bad_settings_are_refused_in_one_line(compose, override, message):
    with pytest.raises(UserError) as err:
        build_system(compose("model.ada=0.6", override), (1, 32, 32))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# ------------------------------------------------------------------ end to end through the CLI
ADA_RUN = ("model.ada=0.6", "model.ada_kimg=0.05", "model.ada_interval=3", "model.diffaugment=translation")  # 0.48 a step


@pytest.fixture(scope="module")
def runs(cli, tiny, tmp_path_factory):
    """8 steps straight, and 4 steps resumed to 8 (mid-interval: ADA adjusts after D steps 3 and 6)."""
    root = tmp_path_factory.mktemp("ada")
    run = lambda *args: cli.run("gantrain", *tiny, *ADA_RUN, *args, cwd=root, check=True)  # noqa: E731
    run("trainer.max_steps=8", f"hydra.run.dir={root / 'straight'}")
    run("trainer.max_steps=4", f"hydra.run.dir={root / 'split'}")
    cli.run("gantrain", f"trainer.resume={root / 'split'}", "trainer.max_steps=8", cwd=root, check=True)
    return root


def test_a_run_logs_p_and_rt_and_checkpoints_ada(runs):
    events = EventAccumulator(str(runs / "straight"))
    events.Reload()
    assert {"aug/p", "aug/rt"} <= set(events.Tags()["scalars"])
    assert max(e.value for e in events.Scalars("aug/p")) > 0  # p moved within the 8 steps
    state = torch.load(runs / "straight" / "checkpoints" / "last.pt", weights_only=True)
    assert set(state["ada"]) == {"p", "signs", "count", "rt", "_extra_state"} and state["ada"]["rt"] != 0  # adjusted
    assert state["ada"]["_extra_state"] == {"calls": 2} and state["ada"]["count"] == 2 * 8  # 2 D steps since then


def test_resumed_run_equals_the_straight_one(runs):
    straight, resumed = (torch.load(runs / name / "checkpoints" / "last.pt", weights_only=True) for name in ("straight", "split"))
    assert straight["step"] == resumed["step"] == 8
    for module in ("generator", "discriminator", "ada"):
        assert straight[module].keys() == resumed[module].keys()
        for key, value in straight[module].items():
            same = torch.equal(value, resumed[module][key]) if isinstance(value, torch.Tensor) else value == resumed[module][key]
            assert same, f"{module}.{key}"


def test_bad_setting_on_the_command_line_is_one_line(cli, tiny, tmp_path):
    proc = cli.run("gantrain", *tiny, "model.ada=1.5", cwd=tmp_path)
    assert proc.returncode == 2 and "model.ada=1.5: expected a number in (0, 1)" in proc.stderr and "Traceback" not in proc.stderr
