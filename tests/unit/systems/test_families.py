"""The GAN families: penalties computed per sample, clipping, EMA, DiffAugment, conditioning, SN, presets."""

import numpy as np
import pytest
import torch
from torch import nn

from gantrain.config.build import build_system
from gantrain.errors import UserError
from gantrain.systems.diffaugment import cutout, diff_augment, parse_policy, translation
from gantrain.systems.ema import EMA
from gantrain.systems.penalties import gradient_penalty, r1_penalty


# ------------------------------------------------------------------ gradient penalty and R1
def test_gradient_penalty_norm_is_per_sample_over_all_dims():
    real = torch.randn(5, 3, 4, 4)
    half_square = lambda x: 0.5 * x.pow(2).flatten(1).sum(1)  # gradient = x itself, different per sample
    penalty = gradient_penalty(half_square, real, real.clone())  # every interpolate is the sample itself
    norms = real.flatten(1).norm(dim=1)
    assert torch.allclose(penalty, (norms - 1).pow(2).mean())
    wrong = (real.norm(dim=1) - 1).pow(2).mean()  # the classic bug: a norm over channels only
    assert not torch.allclose(penalty, wrong)


def test_interpolation_coefficient_is_one_per_sample():
    seen = []
    critic = lambda x: seen.append(x.detach()) or x.flatten(1).sum(1)
    gradient_penalty(critic, torch.zeros(6, 2, 3, 3), torch.ones(6, 2, 3, 3))
    x_hat = seen[0]  # = 1 - alpha: one value within each sample, different between samples
    per_sample = x_hat.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))
    assert per_sample[:, 0].unique().numel() == 6


def test_gradient_penalty_of_a_linear_critic_by_hand():
    w = torch.randn(1, 2, 3, 3)
    linear = lambda x: (x * w).flatten(1).sum(1)  # gradient w for every sample
    penalty = gradient_penalty(linear, torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3))
    assert torch.allclose(penalty, (w.norm() - 1).pow(2))


def test_r1_penalty_by_hand():
    real = torch.randn(3, 1, 2, 2)
    assert torch.allclose(r1_penalty(lambda x: 0.5 * x.pow(2).flatten(1).sum(1), real), real.pow(2).flatten(1).sum(1).mean())


@pytest.fixture
def system_for(compose):
    """system_for(*overrides, shape=(1, 32, 32), classes=0): a plain GAN with 8-channel networks (the default recipe's
    EMA, ADA and R1 off), built, not trained."""

    def system_for(*overrides, shape=(1, 32, 32), classes=0):
        plain = ("model.generator.width=8", "model.discriminator.width=8", "model.ema=null", "model.ada=null", "loss.r1=0")
        return build_system(compose(*plain, *overrides), shape, classes)

    return system_for


def batch(n=4, classes=0, shape=(1, 32, 32)):
    b = {"real": torch.rand(n, *shape) * 2 - 1}
    if classes:
        b["label"] = torch.randint(0, classes, (n,))
    return b


def test_lazy_r1_only_on_its_steps(system_for):
    system = system_for("loss.r1=10", "loss.r1_every=4")
    applied = []
    for step in range(8):
        system.step = step
        _, stats = system.d_loss(batch())
        applied.append("D/r1_penalty" in stats)
    assert applied == [True, False, False, False, True, False, False, False]


def test_gradient_penalty_refuses_batch_norm_in_the_critic(system_for):
    with pytest.raises(UserError, match="model.discriminator.norm=layer"):
        system_for("loss=wgan_gp")
    system = system_for("loss=wgan_gp", "model.discriminator.norm=layer")
    _, stats = system.d_loss(batch())
    assert stats["D/gradient_penalty"] > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in system.D.modules())


# ------------------------------------------------------------------ WGAN clipping
def test_weight_clipping_bounds_every_critic_parameter(train):
    trainer = train("experiment=wgan_mnist", "data=digits", "trainer.max_steps=3", "optim.lr=0.5")  # steps far beyond 0.01
    assert trainer.settings.n_critic == 5
    for p in trainer.system.D.parameters():
        assert p.abs().max() <= 0.01 + 1e-9
    assert not all(p.abs().max() <= 0.01 for p in trainer.system.G.parameters())  # G is not clipped


# ------------------------------------------------------------------ EMA
def test_ema_copies_then_averages():
    net = nn.Linear(2, 2)
    ema = EMA(net, decay=0.9, start=2)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update(net, step=1)
    assert torch.equal(ema.network.weight, net.weight)  # before start: a copy
    before = ema.network.weight.clone()
    with torch.no_grad():
        net.weight.fill_(3.0)
    ema.update(net, step=3)
    assert torch.allclose(ema.network.weight, 0.9 * before + 0.1 * 3.0)
    assert not any(p.requires_grad for p in ema.parameters())


def test_ema_is_used_for_samples_and_checkpointed(train, tensors_held, tmp_path, monkeypatch):
    trainer = train("model.ema=0.5", run_dir=tmp_path)
    system = trainer.system
    assert system.ema is not None
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert "ema" in state and any(k.startswith("network.") for k in state["ema"])
    z = system.fixed_inputs(4, 0, trainer.data)
    with torch.no_grad():
        system.ema.network.main[-2].weight.zero_()  # the EMA generator now draws a constant image
    assert system.preview(z).std() < 1e-6
    # a resume onto another device ("meta" stands in for a GPU) leaves nothing of G, D or the EMA copy behind
    import gantrain.training.trainer

    monkeypatch.setattr(gantrain.training.trainer, "resolve_device", lambda name: torch.device("meta"))
    on_meta = train("model.ema=0.5", run_dir=tmp_path / "meta", fit=False)
    with pytest.warns(UserWarning, match="non-meta parameter"):  # loading into meta tensors copies nothing
        on_meta.load(str(tmp_path))
    held = tensors_held(on_meta.system)
    assert any(name.startswith("ema.network.") for name in held)
    assert {name: t.device for name, t in held.items() if t.device.type != "meta"} == {}


# ------------------------------------------------------------------ DiffAugment
def test_diffaugment_is_differentiable_and_keeps_shapes():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    y = diff_augment(x, parse_policy("color,translation,cutout"))
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_translation_shifts_in_zeros_and_cutout_masks_a_quarter():
    torch.manual_seed(0)
    x = torch.ones(64, 1, 16, 16)
    shifted = translation(x)
    assert (shifted == 0).any() and set(shifted.unique().tolist()) <= {0.0, 1.0}
    masked = cutout(x)
    assert 0.15 < (masked == 0).float().mean() < 0.3  # an 8x8 square of 16x16, clipped at the borders


def test_diffaugment_reaches_d_for_real_and_fake(system_for):
    system = system_for("model.diffaugment=cutout")
    inputs = []
    system.D.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach()))
    system.d_loss({"real": torch.ones(4, 1, 32, 32)})
    assert all((x == 0).any() for x in inputs) and len(inputs) == 2


def test_unknown_diffaugment_policy_is_refused():
    with pytest.raises(UserError, match="unknown zoom"):
        parse_policy("color,zoom")


# ------------------------------------------------------------------ conditional models
@pytest.mark.parametrize("model", ["dcgan", "mlp", "resnet", "cgan"])
def test_conditional_models_take_labels(compose, model):
    shape = (1, 28, 28) if model in ("mlp", "cgan") else (1, 32, 32)
    overrides = [f"model={model}"] + (["model.conditional=true"] if model != "cgan" else [])
    if model in ("dcgan", "resnet"):  # slim networks: the labels' path is the same (the SNGAN's full width takes 4 s)
        overrides += ["model.generator.width=8", "model.discriminator.width=8"]
    cfg = compose(*overrides)
    system = build_system(cfg, shape, num_classes=10)
    loss, _ = system.d_loss(batch(4, 10, shape))
    loss.backward()
    g_loss, _ = system.g_loss(batch(4, 10, shape))
    assert torch.isfinite(g_loss) and system.num_classes == 10
    fixed = system.fixed_inputs(64, 0, None)  # the GAN draws its own inputs; only CycleGAN shows real data
    assert fixed["labels"].tolist() == [c for c in range(10) for _ in range(8)]  # one class per grid row
    assert system.preview(fixed).shape == (80, *shape)


def test_conditional_outputs_depend_on_the_label(system_for):
    system = system_for("model.conditional=true", classes=10)
    z = system.noise(1).repeat(2, 1)
    out = system.preview({"z": z, "labels": torch.tensor([0, 7])})
    assert not torch.allclose(out[0], out[1])


def test_projection_discriminator_for_resnet(compose):
    system = build_system(compose("model=resnet", "model.conditional=true"), (3, 32, 32), 10)
    assert system.D.embed is not None and system.D.embed.weight.shape == (10, 128)


def test_conditional_on_unlabelled_data_is_refused(compose):
    with pytest.raises(UserError, match="model.conditional=true needs labelled data"):
        build_system(compose("model.conditional=true"), (1, 32, 32), 0)


def test_sample_cli_draws_one_class_and_stores_labels(cli, mnist_root, tmp_path):
    run_dir = tmp_path / "run"
    cli.run("gantrain", "experiment=cgan_mnist", f"data.root={mnist_root}", "trainer=debug", f"hydra.run.dir={run_dir}",
            cwd=tmp_path, check=True)
    cli.run("gantrain-sample", f"run={run_dir}", "n=12", "label=3", f"out={tmp_path / 's.npz'}", cwd=tmp_path, check=True)
    saved = np.load(tmp_path / "s.npz")
    assert saved["images"].shape == (12, 1, 28, 28) and saved["labels"].tolist() == [3] * 12
    bad = cli.run("gantrain-sample", f"run={run_dir}", "label=12", cwd=tmp_path)
    assert bad.returncode == 2 and "classes 0..9" in bad.stderr


# ------------------------------------------------------------------ spectral norm and architectures
@pytest.mark.parametrize("model, shape", [("dcgan", (1, 32, 32)), ("mlp", (1, 28, 28)), ("resnet", (3, 32, 32))])
def test_spectral_norm_on_every_discriminator_layer(compose, model, shape):
    system = build_system(compose(f"model={model}", "model.spectral_norm=true"), shape)
    layers = [m for m in system.D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert layers and all(nn.utils.parametrize.is_parametrized(m, "weight") for m in layers)
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in system.G.modules())


def test_resnet_matches_mimicry_sngan32_size(compose):
    system = build_system(compose("model=resnet"), (3, 32, 32))
    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(system.G) == 4_276_739
    assert count(system.D) == 1_053_825


def test_keras_dcgan_follows_the_seed(compose):
    system = build_system(compose("model=dcgan_keras"), (3, 64, 64))
    convs = [m for m in system.D.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(m.kernel_size == (5, 5) for m in convs)
    assert [m.out_channels for m in convs][1::2] == [16, 32, 64, 128]
    assert all(m.negative_slope == 0.3 for m in system.D.modules() if isinstance(m, nn.LeakyReLU))
    assert all(m.eps == 1e-3 for m in system.G.modules() if isinstance(m, nn.BatchNorm2d))
    assert system.G(torch.randn(2, 100)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize("norm, layer", [("none", None), ("layer", nn.GroupNorm), ("instance", nn.InstanceNorm2d)])
def test_critic_norm_options(system_for, norm, layer):
    system = system_for(f"model.discriminator.norm={norm}")
    kinds = {type(m) for m in system.D.modules()}
    assert nn.BatchNorm2d not in kinds and (layer is None or layer in kinds)


@pytest.mark.parametrize("loss", ["bce", "minimax", "lsgan", "wgan", "wgan_gp", "hinge"])
def test_every_loss_trains_with_smoothing_ttur_and_n_critic(train, loss):
    extra = ["loss.real_label=0.9"] if loss in ("bce", "minimax", "lsgan") else []
    extra += ["model.discriminator.norm=layer"] if loss == "wgan_gp" else []
    trainer = train(f"loss={loss}", "trainer.n_critic=2", "optim.generator.lr=1e-4", "optim.discriminator.lr=4e-4",
                    "trainer.max_steps=2", *extra)
    assert trainer.opt_d.param_groups[0]["lr"] == 4e-4 and trainer.opt_g.param_groups[0]["lr"] == 1e-4
    steps = lambda opt: {int(s["step"]) for s in opt.state_dict()["state"].values()}  # noqa: E731
    assert steps(trainer.opt_d) == {4} and steps(trainer.opt_g) == {2}  # n_critic=2: two D updates per G update
    assert getattr(trainer.system.loss, "real_label", 1.0) == (0.9 if extra and loss != "wgan_gp" else 1.0)
    assert all(torch.isfinite(p).all() for p in trainer.system.parameters())
