"""CycleGAN on two synthetic domains the tests draw (red squares on black, green squares on white):
networks, data, pool, losses, LR schedule, exact resume, grids and the translate command."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import gantrain.training.trainer
from gantrain.config.build import build_trainer
from gantrain.data.unpaired import unpaired
from gantrain.errors import UserError
from gantrain.models.cyclegan import PatchDiscriminator, ResnetGenerator
from gantrain.systems.cyclegan import ImagePool


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    for split, n in (("train", 16), ("test", 8)):
        for domain in "AB":
            folder = root / f"{split}{domain}"
            folder.mkdir()
            for i in range(n):
                image = np.zeros((36, 36, 3), np.uint8) if domain == "A" else np.full((36, 36, 3), 255, np.uint8)
                r, c, s = rng.integers(4, 20), rng.integers(4, 20), rng.integers(6, 12)
                image[r:r + s, c:c + s] = (255, 0, 0) if domain == "A" else (0, 160, 0)
                Image.fromarray(image).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def train_toy(train, tiny_cyclegan, toy_root):
    """train_toy(run_dir, *overrides, fit=True): conftest's `train` with the tiny CycleGAN on the toy domains."""

    def train_toy(run_dir, *overrides, fit=True):
        return train(f"data.root={toy_root}", *overrides, run_dir=run_dir, base=tiny_cyclegan, fit=fit)

    return train_toy


def test_networks_follow_the_paper():
    g, d = ResnetGenerator([3, 256, 256], n_blocks=9), PatchDiscriminator([3, 256, 256])
    assert sum(p.numel() for p in g.parameters()) == 11_378_179  # the CycleGAN code's counts
    assert sum(p.numel() for p in d.parameters()) == 2_764_737
    assert d(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)  # 70x70 patches
    assert sum(isinstance(m, torch.nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 9
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in g.modules()) == 3 + 2 * 9 + 2
    out = ResnetGenerator([1, 28, 28], width=8, n_blocks=6)(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 1, 28, 28) and out.abs().max() <= 1
    with pytest.raises(UserError, match="multiple of 4"):
        ResnetGenerator([3, 30, 30])


def test_unpaired_batches_are_random_crops_in_range_and_resume_exactly(toy_root):
    data = unpaired(str(toy_root), image_size=32, load_size=36)
    assert data.shape == (3, 32, 32) and data.batch_keys == ("A", "B")
    batches = data.batches(4, seed=0, device=torch.device("cpu"))
    seen = [next(batches) for _ in range(3)]
    for batch in seen:
        assert batch["A"].shape == batch["B"].shape == (4, 3, 32, 32)
        assert -1 <= batch["A"].min() and batch["A"].max() <= 1
        assert batch["A"][:, 1:].max() == -1 and batch["B"].min() >= -1  # A: red on black, no green anywhere
    state = batches.state_dict()
    following = next(batches)
    again = data.batches(4, seed=0, device=torch.device("cpu"))
    again.load_state_dict(state)
    repeated = next(again)
    assert all(torch.equal(following[k], repeated[k]) for k in "AB")
    with pytest.raises(UserError, match="trainA"):
        unpaired(str(toy_root / "trainA"))


def test_pool_returns_new_images_until_full_then_mixes_history():
    torch.manual_seed(0)
    pool = ImagePool(4)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling up: returned as given
    later = 100 + torch.arange(64.0).view(64, 1, 1, 1)
    out = pool.query(later).flatten()
    from_history = (out < 100).sum().item() + sum(1 for v in out.tolist() if v >= 100 and v not in later.flatten().tolist())
    assert 0 < (out != later.flatten()).sum() < 64 and from_history > 0
    assert len(pool.images) == 4 and torch.equal(pool.last, out.view(64, 1, 1, 1))
    copy = ImagePool(4)
    copy.set_extra_state(pool.get_extra_state())
    assert all(torch.equal(a, b) for a, b in zip(copy.images, pool.images)) and torch.equal(copy.last, pool.last)
    assert torch.equal(ImagePool(0).query(later), later)


def test_cycle_loss_falls_and_tensorboard_has_every_term_and_the_grid(train_toy, tmp_path):
    trainer = train_toy(tmp_path / "run", "trainer.max_steps=40", "trainer.log_every=5", "trainer.sample_every=40",
                    "trainer.checkpoint_every=40", "optim.lr=1e-3")
    events = EventAccumulator(str(tmp_path / "run")).Reload()
    for tag in ("loss/G_AB", "loss/G_BA", "loss/D_A", "loss/D_B", "loss/cycle", "loss/identity", "loss/D", "loss/G"):
        assert tag in events.Tags()["scalars"], tag
    cycle = [e.value for e in events.Scalars("loss/cycle")]
    assert np.mean(cycle[-2:]) < 0.7 * np.mean(cycle[:2]), cycle
    grid = trainer.system.preview(trainer.fixed)
    assert grid.shape == (48, 3, 32, 32)  # rows: real A, fake B, rec A, real B, fake A, rec B
    assert torch.equal(grid[:8], trainer.fixed["A"]) and torch.equal(grid[24:32], trainer.fixed["B"])


def test_learning_rate_is_constant_then_falls_linearly_to_zero(train_toy, tmp_path):
    trainer = train_toy(tmp_path / "run", "trainer.max_steps=8", "trainer.decay_start=4", "trainer.log_every=1")
    lrs = [e.value for e in EventAccumulator(str(tmp_path / "run")).Reload().Scalars("lr/G")]
    # logged at step s: the rate step s trained with; steps after decay_start fall by lr / (max_steps - decay_start)
    assert lrs == pytest.approx([2e-4] * 5 + [1.5e-4, 1e-4, 0.5e-4], rel=1e-6)
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(0.5e-4, rel=1e-6)


def test_resume_is_bitwise_identical_to_a_straight_run(train_toy, tmp_path):
    small_pool = "model.pool_size=4"  # full after one step: the random swaps and the pending fakes must resume
    straight = train_toy(tmp_path / "straight", "trainer.max_steps=4", small_pool)
    train_toy(tmp_path / "split", "trainer.max_steps=2", small_pool)
    resumed = train_toy(tmp_path / "split", "trainer.max_steps=4", small_pool, f"trainer.resume={tmp_path / 'split'}")
    for name in ("G", "D", "pools"):
        a, b = getattr(straight.system, name).state_dict(), getattr(resumed.system, name).state_dict()
        for key in a:
            values = zip(a[key].values(), b[key].values()) if isinstance(a[key], dict) else [(a[key], b[key])]
            assert all(torch.equal(x, y) for x, y in values), key


@pytest.fixture(scope="module")
def short_run(train_toy, tmp_path_factory):
    """Two steps with a pool of 4: full after the first, so its checkpoint holds pooled images and `last`."""
    run_dir = tmp_path_factory.mktemp("short") / "run"
    train_toy(run_dir, "trainer.max_steps=2", "model.pool_size=4")
    return run_dir


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_resume_puts_every_tensor_on_the_training_device(train_toy, tensors_held, short_run, tmp_path, monkeypatch):
    """Checkpoints are read onto the CPU and loaded after the Trainer moved the system: the pools' images
    must follow it (on CUDA, CPU images would reach the discriminators). `meta` stands in for a GPU."""
    monkeypatch.setattr(gantrain.training.trainer, "resolve_device", lambda name: torch.device("meta"))
    trainer = train_toy(tmp_path / "meta", "model.pool_size=4", fit=False)
    trainer.load(str(short_run))
    held = tensors_held(trainer.system)
    assert "pools.a.images.3" in held and "pools.b.last" in held  # the walk reaches the restored history
    assert {name: t.device for name, t in held.items() if t.device.type != "meta"} == {}


def test_translate_command_keeps_file_names(cli, toy_root, short_run, tmp_path):
    out = tmp_path / "translated"
    sample = ["-c", "from gantrain.cli import sample; sample()", f"run={short_run}"]
    done = cli.run(*sample, f"input={toy_root / 'testA'}", f"out={out}", "direction=AtoB", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (toy_root / "testA").iterdir() if p.suffix == ".png")
    translated, source = Image.open(out / "000.png"), Image.open(toy_root / "testA" / "000.png")
    assert translated.size == (32, 32)
    difference = np.abs(np.asarray(translated, float) - np.asarray(source.resize((32, 32)), float)).mean()
    assert difference > 10  # G_AB's output, not the input resized
    wrong = cli.run(*sample, f"input={toy_root / 'testA'}", "direction=sideways", cwd=tmp_path, timeout=120)
    assert wrong.returncode == 2 and "expected one of AtoB, BtoA" in wrong.stderr and "Traceback" not in wrong.stderr


def test_translate_skips_an_image_over_pils_size_limit(toy_root, short_run, tmp_path, monkeypatch, caplog):
    from gantrain.generate.translate import translate_folder

    source = tmp_path / "in"
    shutil.copytree(toy_root / "testA", source)
    Image.new("RGB", (200, 200)).save(source / "huge.png")  # over the lowered limit: a decompression bomb to PIL
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # 2x this raises DecompressionBombError on open
    with caplog.at_level("WARNING"):
        out = translate_folder(str(short_run), str(source), str(tmp_path / "out"), "AtoB", 8, "cpu")
    assert "huge.png" not in {p.name for p in out.iterdir()} and len(list(out.iterdir())) == len(list(source.iterdir())) - 1
    assert "skipped 1 unreadable or oversized" in caplog.text


def test_wrong_data_for_the_model_is_one_line(compose, toy_root, tmp_path):
    with pytest.raises(UserError, match="data=unpaired"):
        build_trainer(compose("model=cyclegan", "trainer=debug"), tmp_path / "a")
    with pytest.raises(UserError, match="only model=cyclegan"):
        build_trainer(compose("data=unpaired", f"data.root={toy_root}", "trainer=debug"), tmp_path / "b")
