"""The StyleGAN2-ADA system: its regularisers (R1, path length and its running mean), style mixing, the lazy steps
and the optimizers' correction for them, the EMA by half-life, an exact resume with everything in flight, the
import of official state dicts (the golden file's) into a run that samples, truncates in W and exports."""

import os
from pathlib import Path

import pytest
import torch

from gantrain.config.build import build_system, system_from_checkpoint
from gantrain.errors import UserError
from gantrain.generate import export, official
from gantrain.generate.sampling import sample_to_files
from gantrain.systems.ema import half_life_decay
from gantrain.systems.stylegan2 import PathLength
from gantrain.training.checkpoint import check_resumable, load_checkpoint
from gantrain.training.update import lazy_correction

GOLDEN = Path(__file__).parents[1] / "models" / "data" / "stylegan2_golden.pt"
# the CPU preset at debug size (32-wide mapping, 16-channel networks) on 16x16 digits, every regulariser on and due
# every other step, ADA adjusting every other D step by 0.32 (so p moves), the EMA ramped up
TINY = ("experiment=stylegan2_digits", "trainer=debug", "data.image_size=16", "loss.r1=0.5", "loss.r1_every=2",
        "model.pl_weight=2", "model.pl_every=2", "model.style_mixing=0.9", "model.ada_kimg=0.05",
        "model.ada_interval=2", "model.ada=0.01")


def tiny_system(compose, *overrides):
    torch.manual_seed(0)
    return build_system(compose(*TINY, *overrides), (1, 16, 16))


def test_r1_is_half_gamma_times_the_interval_times_the_squared_input_gradient(compose):
    system = tiny_system(compose, "model.ada=null")
    real = torch.randn(4, 1, 16, 16)
    loss, stats = system.reg_loss("D", {"real": real})
    x = real.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(system.D(x).sum(), x)
    expected = grad.square().sum([1, 2, 3]).mean()
    assert torch.allclose(stats["D/r1_penalty"], expected, rtol=1e-5)
    assert torch.allclose(loss, 0.5 * 0.5 * 2 * expected, rtol=1e-5)
    loss.backward()  # the logits' zero term reaches the weights the penalty does not (DDP needs every gradient)
    assert all(p.grad is not None for p in system.D.parameters()) and system.D.epilogue.out.bias.grad.abs().sum() == 0


def test_path_length_measures_jacobian_lengths_against_its_running_mean():
    ws = torch.randn(3, 2, 4, requires_grad=True)  # (B, num_ws, w_dim)
    s = ws.sum(dim=1)  # (B, w_dim)
    images = s.square().view(3, 4, 1, 1)  # d <images, y> / d w_i = 2 s y for each of the ws: |J^T y| = 2 |s y|
    module = PathLength(decay=0.01)
    torch.manual_seed(5)
    penalties, lengths = module(images, ws)
    torch.manual_seed(5)
    y = torch.randn(3, 4)  # the noise it drew, over sqrt(H W) = 1
    assert torch.allclose(lengths, 2 * (s * y).norm(dim=1))
    mean = 0.01 * lengths.mean()  # the running mean starts at 0
    assert torch.allclose(module.mean, mean) and torch.allclose(penalties, (lengths - mean).square())
    penalties.sum().backward()  # differentiable w.r.t. ws (the penalty trains G)
    assert ws.grad is not None
    _, again = module(images, ws)
    assert torch.allclose(module.mean, mean + 0.01 * (again.mean() - mean))  # decay 0.01 towards each batch's mean


def test_style_mixing_switches_to_a_second_w_at_one_random_layer(compose):
    system = tiny_system(compose, "model.style_mixing=1.0")
    cutoffs = set()
    for _ in range(12):
        ws = system.mapped(3, None)  # (3, num_ws, w_dim)
        changes = [i for i in range(1, ws.shape[1]) if not torch.equal(ws[:, i], ws[:, i - 1])]
        assert len(changes) == 1 and all(torch.equal(ws[:, i], ws[:, 0]) for i in range(changes[0]))
        cutoffs.add(changes[0])
    assert len(cutoffs) > 1 and min(cutoffs) >= 1
    unmixed = tiny_system(compose, "model.style_mixing=0").mapped(3, None)
    assert all(torch.equal(unmixed[:, i], unmixed[:, 0]) for i in range(unmixed.shape[1]))


def test_lazy_correction_and_half_life_decay_values():
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.0025, betas=(0.0, 0.99))
    lazy_correction(optimizer, 16)  # official mb_ratio = 16 / 17
    group = optimizer.param_groups[0]
    assert group["lr"] == pytest.approx(0.0025 * 16 / 17) and group["betas"] == (0.0, pytest.approx(0.99 ** (16 / 17)))
    assert half_life_decay(64, 0, 10, 0.05) == 0.0  # the first step copies G
    assert half_life_decay(64, 64_000, 10, None) == pytest.approx(0.5 ** (64 / 10_000))
    assert half_life_decay(64, 64_000, 500, 0.05) == pytest.approx(0.5 ** (64 / 3_200))  # ramped: 5% of 64k images


@pytest.fixture(scope="module")
def runs(train, tmp_path_factory):
    """6 steps straight (its lazy steps recorded), and 3 steps resumed to 6 (mid-interval for R1, path length,
    ADA's adjustment and the EMA's ramp)."""
    root = tmp_path_factory.mktemp("stylegan2")
    straight = train(*TINY, "trainer.max_steps=6", run_dir=root / "straight", base=(), fit=False)
    lazy_steps, reg_loss = [], straight.system.reg_loss

    def recorded(name, batch):
        lazy_steps.append((name, straight.system.step))
        return reg_loss(name, batch)

    straight.system.reg_loss = recorded
    straight.fit()
    train(*TINY, "trainer.max_steps=3", run_dir=root / "split", base=())
    train(*TINY, "trainer.max_steps=6", f"trainer.resume={root / 'split'}", run_dir=root / "split", base=())
    return root, straight, lazy_steps


def test_lazy_steps_run_on_their_interval_with_corrected_optimizers(runs):
    _, trainer, lazy_steps = runs
    assert lazy_steps == [("D", 0), ("G", 0), ("D", 2), ("G", 2), ("D", 4), ("G", 4)]
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(0.0025 * 2 / 3)  # r1_every=2
    assert trainer.opt_g.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (2 / 3))  # pl_every=2


def test_a_resumed_run_equals_the_straight_one_bit_for_bit(runs):
    root = runs[0]
    straight, resumed = (torch.load(root / name / "checkpoints" / "last.pt", weights_only=True)
                         for name in ("straight", "split"))
    assert straight["step"] == resumed["step"] == 6
    assert straight["path_length"]["mean"] > 0 and straight["ada"]["p"] > 0  # both in flight
    for key in ("generator", "discriminator", "ema", "ada", "path_length", "optimizers"):
        a, b = leaves(straight[key], key), leaves(resumed[key], key)
        assert a.keys() == b.keys(), key
        for name, value in a.items():
            same = torch.equal(value, b[name]) if isinstance(value, torch.Tensor) else value == b[name]
            assert same, name


def leaves(tree, prefix: str) -> dict:
    """Every value of nested dicts and lists (a state dict, an optimizer's), by its dotted path."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, (list, tuple)) else None
    if items is None:
        return {prefix: tree}
    return {name: value for key, item in items for name, value in leaves(item, f"{prefix}.{key}").items()}


def test_a_gan_declares_no_lazy_steps_and_has_no_psi(train, tiny_run):
    assert train(fit=False).system.lazy_intervals() == {}
    with pytest.raises(UserError, match=r"^psi=0.7: truncation in W needs a mapping network \(model=stylegan2\)"):
        sample_to_files(str(tiny_run), 2, None, 2, "cpu", 0, psi=0.7)


# ------------------------------------------------------------------ gantrain-import on the golden file's networks
@pytest.fixture(scope="module")
def imported(cli, tmp_path_factory):
    """The golden file's official G (as G_ema) and D_resnet, saved as state dicts and imported."""
    golden = torch.load(GOLDEN, weights_only=True)
    root = tmp_path_factory.mktemp("import")
    for net in ("G", "D_resnet"):
        torch.save({k[len(net) + 1:]: v for k, v in golden.items() if k.startswith(f"{net}.") and
                    k.split(".")[1] in ("mapping", "synthesis", "b4", "b8", "b16")}, root / f"{net}.pt")
    done = cli.run("gantrain-import", f"G_ema={root / 'G.pt'}", f"D={root / 'D_resnet.pt'}", f"out={root / 'run'}",
                   "conv_clamp=8", "mbstd_group_size=2", "num_fp16_res=2", cwd=root)
    assert done.returncode == 0, done.stderr
    return root, golden


def test_an_imported_run_samples_the_official_images_truncated_in_w(imported):
    root, golden = imported
    state = load_checkpoint(root / "run")
    system = system_from_checkpoint(state).eval()
    assert state["data_shape"] == [3, 16, 16] and state["num_classes"] == 5 and set(state["imported"]) == {"G_ema", "D"}
    assert state["config"]["model"]["generator"]["channel_base"] == 128 and state["config"]["data"]["channels"] == 3
    for psi, cutoff, name in ((None, None, "img"), (0.7, None, "img_psi0.7"), (0.7, 2, "img_psi0.7_cutoff2")):
        images = system.decode(golden["z"], golden["labels"], psi=psi, psi_cutoff=cutoff)  # const noise, fp32
        assert (images - golden[f"G.{name}"]).abs().max() <= 1e-4, name


def test_an_imported_run_exports_and_is_not_resumed(imported):
    root, golden = imported
    path, card, _ = export.export_run(str(root / "run"), "torchscript", str(root / "g.pt"), psi=0.7, psi_cutoff=2)
    module = torch.jit.load(str(path))
    images = module(golden["z"], golden["labels"])
    assert (images - golden["G.img_psi0.7_cutoff2"]).abs().max() <= 1e-4
    assert '"psi": 0.7' in card.read_text() and '"psi_cutoff": 2' in card.read_text()
    with pytest.raises(UserError, match="holds imported weights without a training state, so it cannot be resumed"):
        check_resumable(load_checkpoint(root / "run"))  # what `gantrain trainer.resume=RUN` checks first


def test_import_refuses_what_it_cannot_use_in_one_line(imported, cli):
    root, golden = imported
    done = cli.run("gantrain-import", f"G_ema={root / 'G.pt'}", cwd=root)
    assert done.returncode == 2 and done.stderr.startswith("gantrain-import: error: say what to import and where")
    with pytest.raises(UserError, match="not an official StyleGAN2 generator"):
        official.convert(official.read_state_dict(str(root / "D_resnet.pt"), "G_ema"), None, None, 4, 0, None)
    with pytest.raises(UserError, match="holds no state dict"):
        torch.save([1, 2], root / "list.pt")
        official.read_state_dict(str(root / "list.pt"), "D")
    with pytest.raises(UserError, match=r"^out=.* exists and is not an empty folder: name a new run folder$"):
        official.write_run(None, None, str(root / "run"), {})


def test_two_processes_train_it_in_step_with_lazy_steps_and_style_mixing(cli, tmp_path):
    """DDP wraps G's mapping and synthesis apart (path length differentiates synthesis w.r.t. ws) and D; step 0 runs
    both lazy steps, whose zero terms give every weight a gradient, which DDP's all-reduce waits for (gloo, CPU)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = cli.run_ranks(2, "gantrain", *TINY, "trainer.max_steps=1", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                         env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "weights identical on 2 ranks" in done.stdout + done.stderr


def test_a_run_starts_from_imported_networks_with_frozen_blocks_and_mapping(imported, train, make_data, tmp_path):
    """trainer.init_from takes a gantrain-import run; FreezeD keeps D's first block and freeze_mapping G's mapping
    bitwise through steps with path length (measured from detached ws) and two micro-batches per step."""
    root, _ = imported
    data = make_data.image_tree(tmp_path / "data", classes=tuple("abcde"), per_class=2, size=16)  # 5 classes
    sizes = ["model.conditional=true", "model.z_dim=32", "model.generator.w_dim=32", "model.generator.mapping_layers=2",
             "model.generator.channel_base=128", "model.generator.channel_max=16", "model.discriminator.channel_base=128",
             "model.discriminator.channel_max=16", "model.discriminator.mapping_layers=8", "model.generator.conv_clamp=8",
             "model.discriminator.mbstd_group_size=2"]
    tuned = train("model=stylegan2", "loss=bce", "loss.r1=0.1", "loss.r1_every=2", "model.pl_every=2", *sizes,
                  "data=folder", f"data.root={data}", "data.image_size=16", "data.workers=0", "trainer.max_steps=2",
                  "trainer.grad_accum=2", "model.generator.freeze_mapping=true", "model.discriminator.freeze=1",
                  f"trainer.init_from={root / 'run'}", base=("trainer=debug",), fit=False)
    source = load_checkpoint(root / "run")
    G, D = tuned.system.G, tuned.system.D
    assert all(torch.equal(v, source["generator"][k]) for k, v in G.state_dict().items())
    tuned.fit()
    kept = {f"mapping.{k}": v for k, v in G.mapping.state_dict().items() if k != "w_avg"}  # w_avg follows G
    assert all(torch.equal(v, source["generator"][k]) for k, v in kept.items())
    assert all(torch.equal(v, source["discriminator"][f"blocks.0.{k}"]) for k, v in D.blocks[0].state_dict().items())
    assert not torch.equal(G.synthesis.blocks[1].conv0.weight, source["generator"]["synthesis.blocks.1.conv0.weight"])
    assert load_checkpoint(tuned.run_dir)["init_from"]["networks"] == ["generator", "discriminator", "ema"]
