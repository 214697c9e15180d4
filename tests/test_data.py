"""Datasets load into [-1, 1] with the right shapes and labels; batch streams are resumable exactly."""

import pytest
import torch
from PIL import Image

from gantrain.data import folder, toy, torchvision_sets
from gantrain.data.base import StreamData, TensorData
from gantrain.data.digits import digits
from gantrain.errors import UserError
from gantrain.build import build_data
from conftest import compose_config, make_image_tree

CPU = torch.device("cpu")


def test_digits_are_real_labelled_images_in_range():
    data = digits(image_size=32)
    assert len(data) == 1797 and data.shape == (1, 32, 32) and data.num_classes == 10
    batch = next(data.batches(64, seed=0, device=CPU))
    assert batch["real"].shape == (64, 1, 32, 32) and batch["label"].shape == (64,)
    assert batch["real"].min() >= -1 and batch["real"].max() <= 1
    assert batch["real"].min() == -1  # black background


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


def test_folder_decodes_once_and_rebuilds_when_files_change(image_tree, monkeypatch):
    calls = []
    original = folder.decode_all
    monkeypatch.setattr(folder, "decode_all", lambda *a: calls.append(1) or original(*a))
    first = folder.folder(str(image_tree), image_size=16)
    second = folder.folder(str(image_tree), image_size=16)
    assert len(calls) == 1 and torch.equal(first.x, second.x)
    assert len(list((image_tree / ".gantrain-cache").glob("*.pt"))) == 1
    folder.folder(str(image_tree), image_size=8)  # other settings: their own cache entry
    assert len(calls) == 2
    Image.new("RGB", (40, 48), (0, 0, 0)).save(image_tree / "cats" / "new.png")
    third = folder.folder(str(image_tree), image_size=16)
    assert len(calls) == 3 and len(third) == len(first) + 1
    assert len(list((image_tree / ".gantrain-cache").glob("*.pt"))) == 2  # the stale 16px entry was replaced


def test_read_only_data_caches_in_the_user_folder(image_tree, tmp_path, monkeypatch):
    from pathlib import Path

    real_touch = Path.touch

    def touch(self, *args, **kwargs):
        if str(self).startswith(str(image_tree)):
            raise PermissionError(13, "Read-only file system")
        return real_touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", touch)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    folder.folder(str(image_tree), image_size=16)
    assert len(list((tmp_path / "xdg" / "gantrain").glob("*.pt"))) == 1


def test_mnist_dataloader_path_matches_memory(mnist_root):
    memory = torchvision_sets.mnist(root=str(mnist_root))
    stream = torchvision_sets.mnist(root=str(mnist_root), in_memory=False, workers=0)
    assert isinstance(stream, StreamData)
    a, b = memory.batches(16, 2, CPU), stream.batches(16, 2, CPU)
    for _ in range(5):
        x, y = next(a), next(b)
        assert torch.equal(x["real"], y["real"]) and torch.equal(x["label"], y["label"])


def test_folder_accepts_a_relative_root(tmp_path, monkeypatch):
    """data.root=relative/path (the common case on the command line) decodes and caches like an absolute one."""
    make_image_tree(tmp_path / "pictures")
    monkeypatch.chdir(tmp_path)
    data = build_data(compose_config("data=folder", "data.root=pictures", "data.image_size=16"))
    assert len(data) == 12 and data.shape == (3, 16, 16)
