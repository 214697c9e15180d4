"""Datasets load into [-1, 1] with the right shapes and labels; batch streams are resumable exactly."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gantrain.config.build import build_data
from gantrain.data import folder, torchvision_sets, toy
from gantrain.data.base import StreamData, TensorData, take
from gantrain.data.batches import TOO_LARGE
from gantrain.data.digits import digits
from gantrain.errors import UserError

CPU = torch.device("cpu")


def test_digits_are_real_labelled_images_in_range():
    data = digits(image_size=32)
    assert len(data) == 1797 and data.shape == (1, 32, 32) and data.num_classes == 10
    batch = next(data.batches(64, seed=0, device=CPU))
    assert batch["real"].shape == (64, 1, 32, 32) and batch["label"].shape == (64,)
    assert batch["real"].min() >= -1 and batch["real"].max() <= 1
    assert batch["real"].min() == -1  # black background


def test_data_limit_takes_a_fixed_subset_with_its_labels(mnist_root):
    """data.limit: the same images whatever the run's seed, a smaller limit's among a larger's, labels alongside."""
    every = digits(image_size=8)
    small = digits(image_size=8, limit=100)
    (x, y), (x2, _) = take(every.x, every.labels, 300, 0, "digits"), take(every.x, every.labels, 300, 1, "digits")
    assert len(small) == 100 and small.num_classes == 10 and len(x) == 300 and not torch.equal(x, x2)
    rows = {tuple(image.flatten().tolist()): int(label) for image, label in zip(every.x, every.labels)}
    assert all(rows[tuple(image.flatten().tolist())] == int(label) for image, label in zip(x, y))
    assert {tuple(image.flatten().tolist()) for image in small.x} <= {tuple(image.flatten().tolist()) for image in x}
    assert len(torchvision_sets.mnist(root=str(mnist_root), limit=10)) == 10
    with pytest.raises(UserError, match=r"^data.limit=2000: data=digits has 1797 images; take between 1 and 1797"):
        take(every.x, every.labels, 2000, 0, "digits")


def test_gaussian2d_is_seed002_distribution():
    data = toy.gaussian2d(n=1000, seed=0)
    x = data.x
    assert x.shape == (1000, 2) and not data.is_image
    assert torch.allclose(x.mean(0), torch.tensor([1.0, 2.0]), atol=0.15)
    cov = torch.cov(x.T)
    assert torch.allclose(cov, torch.tensor([[1.01, 1.95], [1.95, 4.25]]), atol=0.4)


def test_mnist_reads_local_files_without_download(mnist_root):
    data = torchvision_sets.mnist(root=str(mnist_root), image_size=32)
    assert len(data) == 64 and data.shape == (1, 32, 32) and data.num_classes == 10


def test_missing_mnist_says_where_to_put_files(tmp_path):
    with pytest.raises(UserError, match=r"MNIST/raw.*data.download=true"):
        torchvision_sets.mnist(root=str(tmp_path))


def test_missing_cifar_says_where_to_put_files(tmp_path):
    with pytest.raises(UserError, match=r"cifar-10-batches-py.*data.download=true"):
        torchvision_sets.cifar10(root=str(tmp_path))


def test_folder_labels_from_class_folders(image_tree):
    data = folder.folder(str(image_tree), image_size=16)
    assert isinstance(data, TensorData) and data.num_classes == 2 and data.shape == (3, 16, 16)
    assert sorted(data.labels.tolist()) == [0] * 6 + [1] * 6


def test_folder_without_class_folders_is_unlabelled(tmp_path):
    for i in range(3):
        Image.new("RGB", (20, 30), (i * 50, 0, 0)).save(tmp_path / f"{i}.png")
    data = folder.folder(str(tmp_path), image_size=8)
    assert data.num_classes == 0 and "label" not in next(data.batches(2, 0, CPU))


def test_folder_converts_modes_and_skips_unreadable(tmp_path):
    Image.new("L", (20, 20), 128).save(tmp_path / "gray.png")
    Image.new("RGBA", (20, 20), (1, 2, 3, 4)).save(tmp_path / "rgba.png")
    Image.new("P", (20, 20)).save(tmp_path / "palette.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    data = folder.folder(str(tmp_path), image_size=8)
    assert len(data) == 3 and data.shape == (3, 8, 8)


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        folder.folder(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="no image files"):
        folder.folder(str(tmp_path))


def test_streamed_folder_matches_in_memory(image_tree):
    memory = folder.folder(str(image_tree), image_size=16, in_memory=True)
    stream = folder.folder(str(image_tree), image_size=16, in_memory=False, workers=0)
    assert isinstance(stream, StreamData)
    a, b = memory.batches(4, 3, CPU), stream.batches(4, 3, CPU)
    for _ in range(5):  # crosses an epoch boundary (12 images, 3 batches per epoch)
        x, y = next(a), next(b)
        assert torch.equal(x["real"], y["real"]) and torch.equal(x["label"], y["label"])


def test_celeba_layout_and_missing_message(tmp_path):
    with pytest.raises(UserError, match="img_align_celeba"):
        folder.celeba(root=str(tmp_path))
    faces = tmp_path / "celeba" / "img_align_celeba"
    faces.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (178, 218), (i * 40, 90, 200)).save(faces / f"{i:06d}.jpg")
    data = folder.celeba(root=str(tmp_path))
    assert data.shape == (3, 64, 64) and data.num_classes == 0


@pytest.mark.parametrize("stream", [False, True])
def test_batches_resume_from_state(image_tree, stream):
    data = folder.folder(str(image_tree), image_size=8, in_memory=not stream, workers=0, hflip=True)
    straight = data.batches(5, seed=7, device=CPU)
    expected = [next(straight)["real"] for _ in range(6)]
    first = data.batches(5, seed=7, device=CPU)
    for _ in range(3):
        next(first)
    resumed = data.batches(5, seed=7, device=CPU)
    resumed.load_state_dict(first.state_dict())
    for want in expected[3:]:
        assert torch.equal(next(resumed)["real"], want)


def test_hflip_flips_about_half(image_tree):
    data = folder.folder(str(image_tree), image_size=8, hflip=True)
    plain = folder.folder(str(image_tree), image_size=8, hflip=False)
    a, b = next(data.batches(12, 1, CPU))["real"], next(plain.batches(12, 1, CPU))["real"]
    flipped = sum(not torch.equal(x, y) and torch.equal(x, y.flip(-1)) for x, y in zip(a, b))
    assert 2 <= flipped <= 10


def test_batch_size_larger_than_data_is_refused():
    with pytest.raises(UserError, match="lower trainer.batch_size"):
        toy.gaussian2d(n=10).batches(11, 0, CPU)


def test_folder_decodes_once_and_rebuilds_when_files_change(image_tree, monkeypatch, tmp_path):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    decoded = tmp_path / "cache" / "decoded"
    calls = []
    original = folder.decode_all
    monkeypatch.setattr(folder, "decode_all", lambda *a: calls.append(1) or original(*a))
    first = folder.folder(str(image_tree), image_size=16)
    second = folder.folder(str(image_tree), image_size=16)
    assert len(calls) == 1 and torch.equal(first.x, second.x)
    assert len(list(decoded.glob("*.pt"))) == 1
    folder.folder(str(image_tree), image_size=8)  # other settings: their own cache entry
    assert len(calls) == 2
    Image.new("RGB", (40, 48), (0, 0, 0)).save(image_tree / "cats" / "new.png")
    third = folder.folder(str(image_tree), image_size=16)
    assert len(calls) == 3 and len(third) == len(first) + 1
    assert len(list(decoded.glob("*.pt"))) == 2  # the stale 16px entry was replaced


def test_mnist_dataloader_path_matches_memory(mnist_root):
    memory = torchvision_sets.mnist(root=str(mnist_root))
    stream = torchvision_sets.mnist(root=str(mnist_root), in_memory=False, workers=0)
    assert isinstance(stream, StreamData)
    a, b = memory.batches(16, 2, CPU), stream.batches(16, 2, CPU)
    for _ in range(5):
        x, y = next(a), next(b)
        assert torch.equal(x["real"], y["real"]) and torch.equal(x["label"], y["label"])


def test_folder_accepts_a_relative_root(make_data, compose, tmp_path, monkeypatch):
    """data.root=relative/path (the common case on the command line) decodes and caches like an absolute one."""
    make_data.image_tree(tmp_path / "pictures")
    monkeypatch.chdir(tmp_path)
    data = build_data(compose("data=folder", "data.root=pictures", "data.image_size=16"))
    assert len(data) == 12 and data.shape == (3, 16, 16)


# ------------------------------------------------------------------ caches live outside the data folder
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under root (links not followed): path -> (size, mtime_ns). A folder's mtime
    changes when anything is created or removed in it, even a probe file deleted again."""
    found = {".": (0, os.lstat(root).st_mtime_ns)}
    for folder_, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder_, name))
            found[os.path.relpath(os.path.join(folder_, name), root)] = (st.st_size, st.st_mtime_ns)
    return found


@pytest.mark.parametrize("in_memory", [True, False])
def test_training_and_evaluation_never_write_into_the_data_folder(train, make_data, tmp_path, monkeypatch, in_memory):
    import torchvision

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    root = make_data.image_tree(tmp_path / "pictures", per_class=8)
    before = snapshot(root)
    # decodes (and caches), trains, and evaluates (classifier, statistics)
    train("data=folder", f"data.root={root}", "data.image_size=16", f"data.in_memory={in_memory}", "trainer.eval_every=4",
          "metrics.num_samples=16", "metrics.real_samples=16", "metrics.classifier_epochs=1", "metrics.metrics=[fid,kid]",
          "metrics.kid_subsets=2", "metrics.kid_subset_size=8", run_dir=tmp_path / "run")
    assert snapshot(root) == before
    assert len(torchvision.datasets.ImageFolder(str(root))) == 16
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == int(in_memory)
    cached = sorted(p.name for p in (tmp_path / "cache" / "metrics").iterdir())
    assert any(n.startswith("classifier-folder") for n in cached) and any(n.startswith("realfeatures-") for n in cached)


def test_cache_folder_is_gantrain_cache_then_xdg_then_home(make_data, tmp_path, monkeypatch, caplog):
    from gantrain.caches import cache_dir

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("decoded") == tmp_path / "mine" / "decoded" and (tmp_path / "mine" / "decoded").is_dir()
    monkeypatch.setenv("GANTRAIN_CACHE", "")  # empty means unset, as XDG says
    assert cache_dir("metrics") == tmp_path / "xdg" / "gantrain" / "metrics"
    monkeypatch.delenv("GANTRAIN_CACHE")
    assert cache_dir("metrics") == tmp_path / "xdg" / "gantrain" / "metrics"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir("metrics") == tmp_path / "home" / ".cache" / "gantrain" / "metrics"
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(UserError, match="set GANTRAIN_CACHE to a writable folder"):
        cache_dir("decoded")
    monkeypatch.delenv("GANTRAIN_CACHE")
    image_tree = make_data.image_tree(tmp_path / "pictures")
    with caplog.at_level(logging.INFO):
        folder.folder(str(image_tree), image_size=8)
    [entry] = (tmp_path / "home" / ".cache" / "gantrain" / "decoded").glob("*.pt")
    assert f"decoded 12 images once; cached in {entry} (" in caplog.text
    with caplog.at_level(logging.INFO):
        folder.folder(str(image_tree), image_size=8)
    assert f"loaded the decoded images from {entry}" in caplog.text


def test_two_folders_of_the_same_files_never_share_a_cache_entry(make_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    a = make_data.image_tree(tmp_path / "a")
    b = Path(shutil.copytree(a, tmp_path / "b"))  # the same names, sizes and times: only the folder differs
    folder.folder(str(a), image_size=8)
    folder.folder(str(b), image_size=8)
    assert len(list((tmp_path / "cache" / "decoded").glob("*.pt"))) == 2


def test_a_damaged_cache_is_rebuilt(image_tree, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    first = folder.folder(str(image_tree), image_size=8)
    [entry] = (tmp_path / "cache" / "decoded").glob("*.pt")
    entry.write_bytes(b"half a file")
    second = folder.folder(str(image_tree), image_size=8)
    assert torch.equal(first.x, second.x) and "ignoring the damaged cache" in caplog.text


# ------------------------------------------------------------------ linked folders and files
def test_linked_class_folders_and_files_are_followed(make_data, tmp_path, monkeypatch):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    elsewhere = make_data.image_tree(tmp_path / "datasets", per_class=3)  # cats/, dogs/ outside root
    root = tmp_path / "data"
    root.mkdir()
    (root / "cats").symlink_to(elsewhere / "cats", target_is_directory=True)
    (root / "dogs").mkdir()
    for image in sorted((elsewhere / "dogs").iterdir()):
        (root / "dogs" / image.name).symlink_to(image)  # linked files
    data = folder.folder(str(root), image_size=8)
    assert len(data) == 6 and data.num_classes == 2 and sorted(data.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert len(folder.folder(str(root), image_size=8, in_memory=False, workers=0)) == 6


def test_a_link_cycle_ends_and_repeats_no_image(make_data, tmp_path):
    root = make_data.image_tree(tmp_path / "data", per_class=2)
    (root / "cats" / "up").symlink_to(root, target_is_directory=True)  # cats/up/cats/up/... forever
    (root / "dogs" / "self").symlink_to(root / "dogs", target_is_directory=True)
    (root / "dogs" / "dangling.png").symlink_to(tmp_path / "missing.png")
    paths, labels, classes = folder.scan(root)
    assert [p.relative_to(root).as_posix() for p in paths] == [
        "cats/000.jpg", "cats/001.png", "dogs/000.jpg", "dogs/001.png"]
    assert labels == [0, 0, 1, 1] and classes == ["cats", "dogs"]


def test_unpaired_domains_may_be_linked_folders(make_data, tmp_path, monkeypatch):
    from gantrain.data.unpaired import unpaired

    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    elsewhere = make_data.image_tree(tmp_path / "datasets", classes=("horses", "zebras"), per_class=4)
    root = tmp_path / "horse2zebra"
    root.mkdir()
    (root / "trainA").mkdir()
    (root / "trainA" / "horses").symlink_to(elsewhere / "horses", target_is_directory=True)
    (root / "trainB").symlink_to(elsewhere / "zebras", target_is_directory=True)
    data = unpaired(str(root), image_size=16, load_size=20, workers=0)
    assert len(data.a) == 4 and len(data.b) == 4


# ------------------------------------------------------------------ decompression bombs
LIMIT = 20_000


def bomb_folder(root: Path) -> Path:
    """With Image.MAX_IMAGE_PIXELS=LIMIT: 10 ordinary images, one in PIL's warning zone (1x..2x the limit),
    one decompression bomb (over 2x) and one file that is no image. (The limit stays above the sample grids
    the run writes and reads back.)"""
    for i, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for j in range(5):
            Image.new("RGB", (20, 20), (i * 200, j * 40, 0)).save(root / name / f"{j}.png")  # 400 pixels
    Image.new("RGB", (170, 170), (9, 9, 9)).save(root / "a" / "large.png")  # 28,900 pixels: PIL warns, we load
    Image.new("RGB", (250, 250)).save(root / "b" / "bomb.png")  # 62,500 pixels: PIL refuses
    (root / "b" / "broken.jpg").write_bytes(b"not an image")
    return root


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")  # forked workers inherit it: no spam, no crash
@pytest.mark.parametrize("in_memory", [True, False])
def test_a_decompression_bomb_is_skipped_and_counted_with_its_reason(train, tmp_path, monkeypatch, caplog, capfd,
                                                                       in_memory):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)  # DataLoader workers are forked: they see it too
    root = bomb_folder(tmp_path / "data")
    batch = 8 if in_memory else 13  # streamed: one batch holds every file, so the bomb is met at step 1
    trainer = train("data=folder", f"data.root={root}", "data.image_size=16", f"data.in_memory={in_memory}",
                    "data.workers=1", f"trainer.batch_size={batch}", run_dir=tmp_path / "run")
    assert trainer.step == 4
    assert len(trainer.data) == (11 if in_memory else 13)
    reasons = ("1 too large for PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS), "
               "1 unreadable (not an image, or damaged)")
    if in_memory:
        assert f"skipped 2 of 13 files: {reasons} (e.g. b/bomb.png, b/broken.jpg)" in caplog.text
    else:
        assert f"skipped 2 of 13 files in this epoch so far: {reasons}" in caplog.text
    out = capfd.readouterr()
    assert "Traceback" not in out.out + out.err and "DecompressionBomb" not in out.out + out.err
    assert Image.MAX_IMAGE_PIXELS == LIMIT  # the limit was never lifted


def test_the_evaluators_real_images_leave_out_skipped_files(compose, tmp_path, monkeypatch):
    """Streamed data returns a blank row for a file it could not decode: it is no real image to score against."""
    from gantrain.config.build import build_data
    from gantrain.metrics.evaluator import real_images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)
    root = bomb_folder(tmp_path / "data")
    data = build_data(compose("data=folder", f"data.root={root}", "data.image_size=16", "data.in_memory=false",
                                     "data.workers=0"))
    images, labels = real_images(data, 100)
    assert len(images) == len(labels) == 11 and int(labels.min()) >= 0


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_the_bomb_limit_reaches_the_decode_workers(tmp_path, monkeypatch):
    """The in-memory decode with worker processes, and ImageFiles itself, see PIL's limit."""
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", LIMIT)
    root = bomb_folder(tmp_path / "data")
    paths, labels, _ = folder.scan(root)
    files = folder.ImageFiles(paths, labels, 8, 3)
    decoded = folder.decode_all(files, 2, root)
    assert len(decoded["images"]) == 11 and sum(decoded["skipped"].values()) == 2
    assert files[paths.index(root / "b" / "bomb.png")][1] == TOO_LARGE
    assert files[paths.index(root / "a" / "large.png")][1] == 0  # the warning zone loads


def test_the_digits_are_read_without_importing_scikit_learn_and_equal_its_loader(monkeypatch):
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from gantrain.data import digits as module

    code = "import sys; from gantrain.data.digits import digits; digits(); print('sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    ink, labels = module.bundled_digits()
    bunch = load_digits()
    assert np.array_equal(ink, bunch.images) and np.array_equal(labels, bunch.target)
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda name: None)  # the file moved: sklearn's loader
    ink, labels = module.bundled_digits()
    assert np.array_equal(ink, bunch.images) and np.array_equal(labels, bunch.target)
