"""gantrain-eval reads exactly the images `real=` and `fake=` name: a folder and an .npz of the same
images score the same, whatever else lies under data.root."""

import json

import numpy as np
import pytest
from hydra import compose, initialize_config_module
from PIL import Image

from gantrain.metrics.scoring import run as run_eval

FAST = ["num_samples=64", "real_samples=64", "kid_subsets=3", "kid_subset_size=16", "is_splits=2",
        "classifier_epochs=1", "device=cpu"]


def eval_config(*overrides: str):
    with initialize_config_module("gantrain.cli.configs", version_base="1.3"):
        return compose("eval", overrides=list(overrides))


def digits_of(mnist_root, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The first n test digits of the tiny MNIST, uint8 (N, 1, 28, 28), with labels."""
    import torchvision

    test = torchvision.datasets.MNIST(str(mnist_root), train=False, download=False)
    return test.data[:n].numpy()[:, None], test.targets[:n].numpy()


def test_a_folder_and_an_npz_of_the_same_images_score_the_same(mnist_root, tmp_path):
    # a distractor under data.root: the old code read these instead of the fake= folder
    noise = mnist_root / "other_images"
    noise.mkdir()
    for i in range(12):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(noise / f"{i}.png")
    images, labels = digits_of(mnist_root)
    folder = tmp_path / "fakes"
    order = np.argsort(labels, kind="stable")  # class sub-folders: the folder is read sorted by class
    for i in order:
        (folder / str(labels[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(images[i, 0]).save(folder / str(labels[i]) / f"{i:04d}.png")
    npz = tmp_path / "fakes.npz"
    np.savez(npz, images=images[order])

    scores = {}
    for name, fake in (("folder", folder), ("npz", npz)):
        out = tmp_path / f"{name}.json"
        run_eval(eval_config("real=mnist", f"fake={fake}", f"data.root={mnist_root}", f"out={out}", *FAST))
        scores[name] = json.loads(out.read_text())
    assert f"({len(images)} images)" in scores["folder"]["source"]
    for key in ("fid", "kid", "is", "precision", "recall"):
        assert scores["folder"][key] == pytest.approx(scores["npz"][key], rel=1e-9, abs=1e-12), key


def test_a_real_folder_is_read_as_named_not_from_data_root(mnist_root, tmp_path):
    images, labels = digits_of(mnist_root)
    real = tmp_path / "real"
    for i, (image, label) in enumerate(zip(images, labels)):
        (real / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[0]).save(real / str(label) / f"{i:04d}.png")
    npz = tmp_path / "same.npz"
    np.savez(npz, images=images)
    out = tmp_path / "m.json"
    # data.root names a folder the real side must NOT read (it holds no images at all)
    run_eval(eval_config(f"real={real}", f"fake={npz}", f"data.root={tmp_path / 'nothing'}", "data.image_size=28",
                         "data.channels=1", f"out={out}", *FAST))
    values = json.loads(out.read_text())
    assert abs(values["fid"]) < 1e-6 and values["precision"] == 1.0  # the same images on both sides
