"""Shared test helpers: compose the real configs, and make small datasets on disk (no downloads)."""

import atexit
import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

import gantrain.cli  # noqa: F401  (registers the config resolvers)

# Under pytest-xdist the two workers share the two cores: one thread each (and in the programs the tests start),
# since OpenMP threads that outnumber the cores spin and can run ten times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
else:
    torch.set_num_threads(2)

# Every cache gantrain writes goes to a fresh folder for this session, never the user's ~/.cache/gantrain; set at
# import so the CLI run in subprocesses inherits it.
if "GANTRAIN_CACHE" not in os.environ:
    os.environ["GANTRAIN_CACHE"] = tempfile.mkdtemp(prefix="gantrain-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GANTRAIN_CACHE"], ignore_errors=True)


def compose_config(*overrides: str):
    """The real configs, as `gantrain <overrides>` would compose them (hydra node left out)."""
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file: magic (0, 0, uint8 code, ndim), big-endian sizes, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist(root: Path, folder: str = "MNIST", n: int = 64, seed: int = 0) -> Path:
    """A tiny MNIST-format dataset: bright squares whose position encodes the label."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 40, (count, 28, 28))
        for img, label in zip(images, labels):
            r, c = divmod(int(label), 5)
            img[4 + r * 10: 12 + r * 10, 2 + c * 5: 7 + c * 5] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def make_unpaired(root: Path, per_domain: int = 10) -> Path:
    """trainA/, trainB/, testA/, testB/ of small RGB images: an unpaired set in the CycleGAN layout."""
    return make_image_tree(root, classes=("trainA", "trainB", "testA", "testB"), per_class=per_domain)


def make_image_tree(root: Path, classes=("cats", "dogs"), per_class: int = 6, size: int = 40) -> Path:
    """Class folders of small RGB PNG/JPEG images of two colours."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = rng.integers(0, 60, (size, size + 8, 3), dtype=np.uint8)
            array[..., k % 3] += 150
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(array).save(folder / f"{i:03d}{suffix}")
    return root


def tensors_held(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a module holds, by name: parameters, buffers, extra state (e.g. CycleGAN's image pools)
    and plain tensor attributes, in lists and dicts too. A resume must leave all of them on the device."""
    found = dict(module.named_parameters()) | dict(module.named_buffers())

    def walk(name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            found[name] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{name}.{i}", item)

    for prefix, sub in module.named_modules():
        prefix = f"{prefix}." if prefix else ""
        if type(sub).get_extra_state is not torch.nn.Module.get_extra_state:
            walk(f"{prefix}<extra_state>", sub.get_extra_state())
        for key, value in vars(sub).items():  # e.g. the pools' `images` and `last`, the GAN's cached `_fake`
            if key not in ("_parameters", "_buffers", "_modules"):  # those three are counted above
                walk(f"{prefix}{key}", value)
    return found


@pytest.fixture
def mnist_root(tmp_path_factory) -> Path:
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def image_tree(tmp_path_factory) -> Path:
    return make_image_tree(tmp_path_factory.mktemp("images"))
