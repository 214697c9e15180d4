"""Every YAML in every config group composes and instantiates; every experiment trains a few steps."""

import json
import pickle
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from gantrain.config.build import build_data, build_system, build_trainer

CONFIGS = Path(str(files("gantrain.configs")))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def make_cifar(root: Path, n: int = 20) -> Path:
    """cifar-10-batches-py pickles in torchvision's layout (integrity check patched out by the caller)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": rng.integers(0, 10, n).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return root


def make_celeba(root: Path, n: int = 10) -> Path:
    faces = root / "celeba" / "img_align_celeba"
    faces.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (178, 218), (30 * i, 120, 200)).save(faces / f"{i:06d}.jpg")
    return root / "celeba"


@pytest.fixture(scope="module")
def data_roots(make_data, tmp_path_factory):
    """A data.root override per dataset, pointing at small files made once here (the tests only read them)."""
    base = tmp_path_factory.mktemp("data")
    return {
        "mnist": [f"data.root={make_data.mnist(base / 'm')}"],
        "fashion_mnist": [f"data.root={make_data.mnist(base / 'f', folder='FashionMNIST')}"],
        "cifar10": [f"data.root={make_cifar(base / 'c')}"],
        "celeba": [f"data.root={make_celeba(base / 'a')}"],
        "folder": [f"data.root={make_data.image_tree(base / 'i')}", "data.image_size=32"],
        "unpaired": [f"data.root={make_data.unpaired(base / 'u')}", "data.image_size=32"],
        "digits": [], "gaussian2d": [],
    }


@pytest.fixture
def data_overrides(data_roots, monkeypatch):
    """data_roots, with torchvision's md5 check of the tiny CIFAR pickles patched out in this process."""
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    return data_roots


def test_groups_have_the_promised_options():
    assert {"digits", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "gaussian2d"} <= set(options("data"))
    assert {"dcgan", "mlp", "infogan", "mlp_bn", "toy", "resnet", "cgan", "dcgan_keras"} <= set(options("model"))
    assert {"bce", "minimax", "lsgan", "wgan", "wgan_gp", "hinge"} <= set(options("loss"))
    assert {"adam", "rmsprop", "sgd"} <= set(options("optim"))
    assert {"default", "debug"} <= set(options("trainer"))
    assert {"cs231n_vanilla", "cs231n_lsgan", "cs231n_dcgan", "mlp_cifar10", "toy_gaussian", "dcgan_celeba",
            "dcgan_mnist", "wgan_mnist", "wgan_gp_cifar10", "hinge_sngan_cifar10", "cgan_mnist",
            "keras_dcgan_celeba", "cyclegan"} <= set(options("experiment"))


@pytest.mark.parametrize("name", options("data"))
def test_every_data_config_instantiates(compose, name, data_overrides):
    data = build_data(compose(f"data={name}", *data_overrides[name]))
    batch = next(data.batches(2, 0, torch.device("cpu")))
    for key in data.batch_keys:  # "real", or "A" and "B" for unpaired domains
        assert batch[key].shape == (2, *data.shape) and batch[key].dtype == torch.float32


SHAPE_FOR_MODEL = {"dcgan": (1, 32, 32), "mlp": (1, 28, 28), "infogan": (1, 28, 28), "mlp_bn": (3, 32, 32), "toy": (2,),
                   "resnet": (3, 32, 32), "cgan": (1, 28, 28), "dcgan_keras": (3, 32, 32), "cyclegan": (3, 32, 32),
                   "stylegan2": (1, 16, 16)}


SHRUNK = {"stylegan2"}  # debug's widths (hydra/debug_model/): the official 512-channel networks take 12 s a step here


@pytest.mark.parametrize("name", options("model"))
def test_every_model_config_instantiates_and_takes_a_step(compose, name):
    cfg = compose(f"model={name}", "loss=bce", *(["debug=default"] if name in SHRUNK else []))  # BCE: D(x) in [0, 1]
    system = build_system(cfg, SHAPE_FOR_MODEL[name], num_classes=10)
    images = lambda: torch.rand(4, *SHAPE_FOR_MODEL[name]) * 2 - 1  # noqa: E731
    batch = {key: images() for key in system.batch_keys} | {"label": torch.randint(0, 10, (4,))}
    d_loss, stats = system.d_loss(batch)
    g_loss, _ = system.g_loss(batch)
    d_loss.backward()
    assert torch.isfinite(d_loss) and torch.isfinite(g_loss) and 0 <= stats.get("D(x)", 0.5) <= 1


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_config_instantiates(compose, name):
    loss = instantiate(compose(f"loss={name}").loss)
    real, fake = torch.randn(5), torch.randn(5)
    assert torch.isfinite(loss.d(real, fake)) and torch.isfinite(loss.g(fake))


@pytest.mark.parametrize("name", options("optim"))
def test_every_optim_config_instantiates(compose, name):
    cfg = compose(f"optim={name}", "optim.discriminator.lr=0.123", "data=mnist")  # the groups alone: no default recipe
    g, d = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt_g, opt_d = instantiate(cfg.optim.generator)(g.parameters()), instantiate(cfg.optim.discriminator)(d.parameters())
    assert isinstance(opt_g, torch.optim.Optimizer) and opt_d.param_groups[0]["lr"] == 0.123
    assert opt_g.param_groups[0]["lr"] == cfg.optim.lr  # optim.lr sets both unless one is overridden


def test_optim_lr_sets_both_networks(compose):
    cfg = compose("optim.lr=1e-3", "data=mnist")
    assert cfg.optim.generator.lr == cfg.optim.discriminator.lr == 1e-3


def test_the_default_recipe_applies_to_digits_with_dcgan_only(compose):
    """hydra/default_recipe/digits_dcgan.yaml: plain `gantrain` (and experiment=fast_digits) get it, G's learning
    rate following optim.lr at 2.3x; other data or models, and experiment presets, keep their own values."""
    default, scaled = compose(), compose("optim.lr=1e-3")
    assert default.model.ema == 0.995 and default.model.ada == 0.6 and default.model.generator.width == 32
    assert default.optim.discriminator.lr == 6.5e-4 and default.optim.generator.lr == pytest.approx(1.495e-3)
    assert scaled.optim.discriminator.lr == 1e-3 and scaled.optim.generator.lr == pytest.approx(2.3e-3)
    assert compose("experiment=fast_digits").model == default.model
    for other in (compose("data=mnist"), compose("model=resnet"), compose("experiment=dcgan_mnist")):
        assert other.model.ema is None and other.model.ada is None and other.trainer.max_steps != 3000


@pytest.mark.parametrize("name", options("trainer"))
def test_every_trainer_config_builds(compose, name, tmp_path):
    cfg = compose(f"trainer={name}")
    trainer = build_trainer(cfg, tmp_path)
    assert trainer.step == 0 and trainer.settings.max_steps == cfg.trainer.max_steps


@pytest.mark.parametrize("name", options("logger"))
def test_every_logger_config_instantiates(compose, name, tmp_path, request):
    overrides = []
    if "mlflow" in name:  # an empty store, made once, in the run folder (not a sweep's another test's Hydra job left)
        request.getfixturevalue("mlflow_store")(tmp_path)
        overrides = ["logger.store_dir=null"] if name == "mlflow" else ["logger.loggers.1.store_dir=null"]
    logger = instantiate(compose(f"logger={name}", *overrides).logger)(run_dir=tmp_path)
    logger.scalars({"x": 1.0}, 1)
    logger.close()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if "tensorboard" in name:
        assert [(e.step, e.value) for e in EventAccumulator(str(tmp_path)).Reload().Scalars("x")] == [(1, 1.0)]
    if "mlflow" in name:
        from mlflow.tracking import MlflowClient

        run_id = json.loads((tmp_path / "mlflow_run.json").read_text())["run_id"]
        history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(run_id, "x")
        assert [(m.step, m.value) for m in history] == [(1, 1.0)]


EXPERIMENT_DATA = {"cs231n_vanilla": "mnist", "cs231n_lsgan": "mnist", "cs231n_dcgan": "mnist", "dcgan_mnist": "mnist",
                   "mlp_cifar10": "cifar10", "dcgan_celeba": "celeba", "toy_gaussian": "gaussian2d",
                   "wgan_mnist": "mnist", "wgan_gp_cifar10": "cifar10", "hinge_sngan_cifar10": "cifar10",
                   "cgan_mnist": "mnist", "keras_dcgan_celeba": "celeba", "cyclegan": "unpaired",
                   "fast_mnist": "mnist", "fast_cifar10": "cifar10", "stylegan2_ada_cifar10": "cifar10",
                   "stylegan2_ada_256": "folder"}


DEBUG_SECONDS, DEBUG_PEAK_MB = 20, 3000  # per preset, and the process's peak resident memory


def test_every_experiment_trains_in_seconds_under_trainer_debug(cli, data_roots, tmp_path):
    """Each preset with nothing but trainer=debug (its own image size, blocks and widths: debug must shrink
    them) trains 4 steps within the ceilings; one process of its own, so its peak memory is the presets' own."""
    roots = {name: [o for o in overrides if o.startswith("data.root=")] for name, overrides in data_roots.items()}
    lines = {name: [f"experiment={name}", "trainer=debug", *roots.get(EXPERIMENT_DATA.get(name), [])]
             for name in options("experiment")}
    script = DEBUG_SCRIPT.format(lines=lines, out=str(tmp_path))
    done = cli.run("-c", script, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(measured) == set(options("experiment"))
    print("\n".join(f"{name:<22}{seconds:6.1f} s {peak_mb:7.0f} MB" for name, (seconds, peak_mb, *_) in measured.items()))
    for name, (seconds, peak_mb, steps, batch_size, trained) in measured.items():
        assert steps == 4 and batch_size == 8 and trained, name  # trainer=debug wins over the preset's recipe
        assert seconds < DEBUG_SECONDS, f"{name}: {seconds:.1f} s under trainer=debug"
        assert peak_mb < DEBUG_PEAK_MB, f"{name}: peak memory {peak_mb:.0f} MB under trainer=debug"
        assert (tmp_path / name / "checkpoints" / "last.pt").is_file()


DEBUG_SCRIPT = """
import json, resource, time
import torch, torchvision
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
import gantrain.cli
from gantrain.config.build import build_trainer

torch.set_num_threads(1)  # the ceiling measures work, not how a shared machine schedules two threads
torchvision.datasets.CIFAR10._check_integrity = lambda self: True  # the tiny pickles made by the test
torchvision.datasets.cifar.check_integrity = lambda *args: True
measured = {{}}
for name, line in {lines!r}.items():
    started = time.perf_counter()
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        cfg = compose("config", overrides=line)
    trainer = build_trainer(cfg, f"{out}/{{name}}", meta={{"config": OmegaConf.to_container(cfg, resolve=True)}})
    before = [p.detach().clone() for p in trainer.g_params + trainer.d_params]
    trainer.fit()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    changed = [not torch.equal(a, b) for a, b in zip(before, trainer.g_params + trainer.d_params)]
    g, d = len(trainer.g_params), len(trainer.d_params)
    trained = any(changed[:g]) and any(changed[g:])  # both networks really learned
    measured[name] = [time.perf_counter() - started, peak_mb, trainer.step, cfg.trainer.batch_size, trained]
print(json.dumps(measured))
"""


def test_cs231n_presets_carry_the_recipe(compose):
    for name in ("cs231n_vanilla", "cs231n_lsgan", "cs231n_dcgan"):
        cfg = compose(f"experiment={name}")
        assert cfg.model.z_dim == 96 and cfg.model.z_dist == "uniform" and cfg.trainer.batch_size == 128
        assert cfg.optim.generator.lr == 1e-3 and list(cfg.optim.generator.betas) == [0.5, 0.999]
    assert compose("experiment=cs231n_lsgan").loss._target_.endswith("LSGAN")


def test_seed_recipes(compose):
    celeba = compose("experiment=dcgan_celeba")
    assert celeba.trainer.batch_size == 128 and celeba.data.image_size == 64 and celeba.optim.lr == 2e-4
    toy = compose("experiment=toy_gaussian")
    assert toy.optim.discriminator.lr == 0.05 and toy.optim.generator.lr == 0.005 and toy.trainer.batch_size == 8
