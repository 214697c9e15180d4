"""Property: any combination of real config options and plausible values either trains a couple of
debug steps or fails with a one-line UserError — never another exception (which would be a traceback)."""

import tempfile
from importlib.resources import files
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hydra.errors import HydraException
from hypothesis import HealthCheck, given, settings

from gantrain.cli.checks import check_command_line
from gantrain.errors import UserError

CONFIGS = Path(str(files("gantrain.configs")))


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def data_roots(make_data, tmp_path_factory) -> dict[str, Path]:
    """Small datasets the examples point data.root at; the other sets find no files (a one-line error)."""
    base = tmp_path_factory.mktemp("property")
    (base / "empty").mkdir()
    return {"mnist": make_data.mnist(base / "m"), "fashion_mnist": make_data.mnist(base / "f", folder="FashionMNIST"),
            "folder": make_data.image_tree(base / "i"), "unpaired": make_data.unpaired(base / "u"), "empty": base / "empty"}


def data_root(name: str) -> list[str]:
    """data.root for the set, as a placeholder the test fills from data_roots."""
    small = ["data.image_size=32"] if name == "unpaired" else []  # CycleGAN at 256x256 would take minutes a step
    return [f"data.root=<{name}>", *small] if name not in ("digits", "gaussian2d") else []


VALUES = {
    "trainer.batch_size": ["2", "8", "0", "-3", "big"],
    "trainer.n_critic": ["1", "2", "0"],
    "trainer.amp": ["false", "bf16", "fp8"],
    "optim.lr": ["1e-4", "0", "-1", "fast"],
    "data.image_size": ["16", "28", "32", "48"],
    "model.z_dim": ["2", "16", "0"],
    "trainer.nan_policy": ["stop", "skip", "maybe"],
    "trainer.max_step": ["3"],  # a typo of max_steps
}


@st.composite
def command_lines(draw) -> list[str]:
    data = draw(st.sampled_from(options("data")))
    line = [f"data={data}", *data_root(data)]
    for group in ("model", "loss", "optim"):
        if draw(st.booleans()):
            line.append(f"{group}={draw(st.sampled_from(options(group)))}")
    if draw(st.booleans()):
        line.append(f"experiment={draw(st.sampled_from(options('experiment')))}")
    for key in draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=3, unique=True)):
        line.append(f"{key}={draw(st.sampled_from(VALUES[key]))}")
    return line


@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(command_lines())
def test_any_override_combination_trains_or_fails_in_one_line(train, data_roots, stop_loader_workers, line):
    roots = {f"data.root=<{name}>": f"data.root={data_roots.get(name, data_roots['empty'])}" for name in options("data")}
    full = ["trainer=debug", *(roots.get(word, word) for word in line), "trainer.max_steps=2", "trainer.grid_size=4"]
    with tempfile.TemporaryDirectory() as run_dir:
        try:
            check_command_line([*full, f"hydra.run.dir={run_dir}"])
            trainer = train(*full, run_dir=run_dir, base=())
        except UserError as err:
            assert "\n" not in str(err).strip() and len(str(err)) < 400, str(err)
            return
        except HydraException as err:  # would reach the user as Hydra's multi-line report
            raise AssertionError(f"{' '.join(full)} -> Hydra error, not a gantrain one-liner: {err}") from err
        finally:
            stop_loader_workers()  # streamed sets' workers, which would otherwise stall a later example 10 s
        assert trainer.step == 2
