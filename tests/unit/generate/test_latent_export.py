"""Latent walks, truncation, class grids (gantrain-sample's modes) and gantrain-export's checked ONNX and TorchScript
files with their model cards. One tiny trained run per kind (the shared GAN, a conditional DCGAN with an EMA, a
CycleGAN), each loaded once, called in this process."""

import io
import json
import math
import os
import sys

import pytest
import torch
from PIL import Image

from gantrain.config.build import system_from_checkpoint
from gantrain.errors import UserError
from gantrain.generate import export
from gantrain.generate.walks import Picture, class_grid, draw_picture, interpolation_grid
from gantrain.systems import latents
from gantrain.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def conditional_run(train):
    """A conditional DCGAN with an EMA of G (whose standing BatchNorm statistics every load recomputes: cheap for
    this one), one tiny step on the bundled digits (the EMA already differs from G)."""
    return train("model.conditional=true", "model.ema=0.9", "trainer.max_steps=1").run_dir


@pytest.fixture(scope="module")
def cyclegan_run(train, tiny_cyclegan, make_data, tmp_path_factory):
    root = make_data.unpaired(tmp_path_factory.mktemp("unpaired"), per_domain=4)
    return train(f"data.root={root}", "data.workers=0", "trainer.max_steps=1", base=tiny_cyclegan).run_dir


def loaded(run):
    return system_from_checkpoint(load_checkpoint(run)).eval()


@pytest.fixture(scope="module")
def gan(tiny_run):
    return loaded(tiny_run)


@pytest.fixture(scope="module")
def conditional(conditional_run):
    return loaded(conditional_run)


@pytest.fixture(scope="module")
def cyclegan(cyclegan_run):
    return loaded(cyclegan_run)


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------ latent maths
def test_slerp_starts_and_ends_on_the_latents_and_keeps_their_norm():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(128, generator=g), torch.randn(128, generator=g)
    path = latents.interpolate(a, b, 9, "normal")
    assert path.shape == (9, 128)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b, atol=1e-5, rtol=1e-5)
    same_norm = b * a.norm() / b.norm()  # between equal norms the arc keeps that norm exactly
    norms = latents.interpolate(a, same_norm, 9, "normal").norm(dim=1)
    torch.testing.assert_close(norms, torch.full((9,), a.norm().item()), atol=1e-4, rtol=1e-5)
    # two draws: the arc's norms stay near theirs, while the straight line sags to ~0.71 of them in the middle
    low, high = min(a.norm(), b.norm()), max(a.norm(), b.norm())
    assert (path.norm(dim=1) > 0.95 * low).all() and (path.norm(dim=1) < 1.05 * high).all()
    assert latents.lerp(a, b, torch.tensor([0.5])).norm() < 0.9 * low
    nearly_a = latents.interpolate(a, a * 1.5, 5, "normal")  # one direction: no division by sin(0)
    assert torch.isfinite(nearly_a).all()
    torch.testing.assert_close(nearly_a[-1], a * 1.5)


def test_uniform_latents_are_interpolated_on_a_straight_line():
    a, b = torch.rand(16) * 2 - 1, torch.rand(16) * 2 - 1
    path = latents.interpolate(a, b, 5, "uniform")
    expected = torch.stack([(1 - w) * a + w * b for w in (0, 0.25, 0.5, 0.75, 1)])
    torch.testing.assert_close(path, expected)
    assert path.abs().max() <= 1


def test_a_walk_loops_through_its_points():
    points = torch.randn(3, 8)
    path = latents.loop_through(points, 4, "normal")
    assert path.shape == (12, 8)
    for k in range(3):  # each segment starts on its point; the last one heads back to the first
        torch.testing.assert_close(path[4 * k], points[k])
    torch.testing.assert_close(latents.slerp(points[2], points[0], torch.tensor([1.0]))[0], points[0], atol=1e-5,
                               rtol=1e-5)


def test_truncation_redraws_only_the_components_beyond_t():
    t = 0.5
    plain = latents.draw(4000, 64, "normal", torch.Generator().manual_seed(3))
    truncated = latents.draw(4000, 64, "normal", torch.Generator().manual_seed(3), truncation=t)
    assert truncated.abs().max() <= t
    within = plain.abs() <= t
    assert torch.equal(truncated[within], plain[within])  # the values already within t stay as they were
    # the redrawn ones follow N(0, 1) restricted to [-t, t]: mean 0, variance 1 - 2 t phi(t) / (2 Phi(t) - 1)
    redrawn = truncated[~within].double()
    phi = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    variance = 1 - 2 * t * phi / math.erf(t / math.sqrt(2))
    assert abs(redrawn.mean()) < 0.01 and abs(redrawn.var() - variance) < 0.01 * variance * 5
    tiny = latents.draw(100, 100, "normal", torch.Generator().manual_seed(0), truncation=0.01)  # few rounds even here
    assert tiny.abs().max() <= 0.01


def test_truncation_is_refused_in_one_line_for_uniform_latents_and_bad_thresholds():
    with pytest.raises(UserError) as err:
        latents.draw(4, 8, "uniform", truncation=0.5)
    assert "needs normal latents" in one_line(err) and "drop truncation=" in one_line(err)
    for bad in (0, -1.0, "abc"):
        with pytest.raises(UserError, match="positive threshold"):
            latents.check_truncation("normal", bad)


def test_sampling_with_truncation_decodes_truncated_noise(gan):
    system = gan
    samples = system.sample(6, generator=torch.Generator().manual_seed(1), truncation=0.3)
    z = latents.draw(6, system.z_dim, "normal", torch.Generator().manual_seed(1), truncation=0.3)
    torch.testing.assert_close(samples, system.decode(z))
    untruncated = system.sample(6, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(samples, untruncated)


# ------------------------------------------------------------------ pictures
class Spy:
    """Records what a system's decode() is asked for."""

    def __init__(self, system):
        self.decode, self.calls = system.decode, []

    def __call__(self, z, labels=None, batch_size=500):
        self.calls.append((z, labels))
        return self.decode(z, labels, batch_size)


def test_class_grid_has_a_row_per_class_with_one_latent_per_column(conditional, gan, monkeypatch):
    system = conditional
    spy = Spy(system)
    monkeypatch.setattr(system, "decode", spy)
    (picture,) = class_grid(system, Picture("classes", n=3))
    assert picture.size == (3 * 34 + 2, 10 * 34 + 2)  # 32x32 images, 2-pixel padding
    (z, labels), = spy.calls
    assert torch.equal(labels, torch.arange(10).repeat_interleave(3))
    rows = z.view(10, 3, -1)
    assert all(torch.equal(rows[k], rows[0]) for k in range(10)) and not torch.equal(rows[0, 0], rows[0, 1])
    with pytest.raises(UserError) as err:
        class_grid(gan, Picture("classes", n=3))
    assert one_line(err).startswith("mode=classes draws a row per class; this model is not conditional")


def test_conditional_interpolation_is_one_latent_path_per_class(conditional, monkeypatch):
    system = conditional
    spy = Spy(system)
    monkeypatch.setattr(system, "decode", spy)
    interpolation_grid(system, Picture("interpolate", n=2, steps=4))
    (z, labels), = spy.calls
    assert torch.equal(labels, torch.arange(10).repeat_interleave(4))
    assert all(torch.equal(row, z[:4]) for row in z.view(10, 4, -1))
    spy.calls.clear()
    interpolation_grid(system, Picture("interpolate", n=2, steps=4, label=7))  # one class: n rows of their own
    (z, labels), = spy.calls
    assert (labels == 7).all() and len(z) == 8 and not torch.equal(z[:4], z[4:])


def test_a_walk_is_a_looping_gif_also_in_tensorboard(tiny_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    picture = Picture("walk", n=4, points=3, frames=2, truncation=0.8)
    path = draw_picture(str(tiny_run), picture, str(tmp_path / "walk.gif"), tensorboard=str(tmp_path / "tb"))
    gif = Image.open(path)
    assert gif.n_frames == 6 and gif.info["loop"] == 0 and gif.size == (2 * 34 + 2, 2 * 34 + 2)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    (logged,) = events.Images("gantrain-sample/walk")
    assert logged.step == 4 and Image.open(io.BytesIO(logged.encoded_image_string)).n_frames == 6


def test_an_mp4_without_imageio_ffmpeg_says_what_to_install(tiny_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if it were not installed
    with pytest.raises(UserError) as err:
        draw_picture(str(tiny_run), Picture("walk", n=1), str(tmp_path / "walk.mp4"))
    assert "pip install imageio imageio-ffmpeg" in one_line(err) and "walk.gif" in one_line(err)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ export
def reference(system, inputs: dict, direction: str) -> torch.Tensor:
    """What gantrain itself makes of these inputs: decode() (EMA included) or translate()."""
    if system.translates:
        return system.translate(inputs["source"], direction)
    return system.decode(inputs["z"], inputs.get("labels"))


@pytest.mark.parametrize("kind", ["gan", "conditional", "cyclegan"])
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_exports_match_pytorch_at_another_batch_size(kind, format, request, tmp_path):
    run = request.getfixturevalue({"gan": "tiny_run", "conditional": "conditional_run", "cyclegan": "cyclegan_run"}[kind])
    system = request.getfixturevalue(kind)
    direction = "BtoA" if kind == "cyclegan" else "AtoB"
    out = tmp_path / f"g{export.SUFFIX[format]}"
    path, card_json, card_md = export.export_run(str(run), format, str(out), direction=direction)
    assert path == out and card_json.is_file() and card_md.is_file()
    inputs = export.model_inputs(system, load_checkpoint(run)["data_shape"], 3, torch.Generator().manual_seed(9), None)
    got = export.run_exported(path, inputs, format)  # batch 3: exported with 2, checked with 5
    expected = reference(system, inputs, direction)
    assert got.shape == expected.shape and (got - expected).abs().max() <= 1e-4
    card = json.loads(card_json.read_text())
    assert card["check"]["max_abs_difference"] <= 1e-4 and card["inputs"][0]["shape"][0] == "batch"
    assert card["network"] == {"gan": "generator", "conditional": "EMA generator", "cyclegan": "G_BA (BtoA)"}[kind]
    if format == "onnx":  # the batch dimension is symbolic in the file itself, inputs and output alike
        import onnx

        graph = onnx.load(str(path)).graph
        assert [i.name for i in graph.input] == list(inputs) and [o.name for o in graph.output] == ["images"]
        assert all(v.type.tensor_type.shape.dim[0].dim_param for v in [*graph.input, *graph.output])


@pytest.mark.filterwarnings("ignore:.*torch.jit.load.* is deprecated:FutureWarning")  # the user's own three lines
def test_the_model_card_describes_the_generator_and_its_example_runs(conditional_run, tmp_path, monkeypatch):
    path, card_json, card_md = export.export_run(str(conditional_run), "torchscript", str(tmp_path / "cgan.pt"),
                                                 truncation=0.7)
    card = json.loads(card_json.read_text())
    state = load_checkpoint(conditional_run)
    assert card["data_shape"] == [1, 32, 32] and card["value_range"] == [-1, 1] and card["classes"] == 10
    assert card["latent"] == {"size": 100, "distribution": "normal", "truncation": 0.7}
    assert [i["name"] for i in card["inputs"]] == ["z", "labels"] and card["inputs"][1]["dtype"] == "int64"
    assert card["outputs"] == [{"name": "images", "shape": ["batch", 1, 32, 32], "dtype": "float32", "range": [-1, 1]}]
    assert card["training_config"] == state["config"] and card["source"]["step"] == 1
    assert card["metrics"]["summary"]["status"] == "finished"
    assert card["bytes"] == path.stat().st_size and card["format"] == "torchscript"
    example = card["loading_example"]
    assert len(example.splitlines()) == 3 and example in card_md.read_text()
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(example, scope)  # the three lines, as a user pastes them beside the file
    assert scope["images"].shape == (16, 1, 32, 32) and scope["images"].abs().max() <= 1


def test_a_failed_check_names_the_difference_and_leaves_no_file(tiny_run, tmp_path, monkeypatch):
    real_run = export.run_exported
    monkeypatch.setattr(export, "run_exported", lambda *args: real_run(*args) + 0.01)
    with pytest.raises(UserError) as err:
        export.export_run(str(tiny_run), "torchscript", str(tmp_path / "g.pt"))
    assert one_line(err).startswith("export check failed: the torchscript model's images differ from PyTorch's by 0.01 ")
    assert os.listdir(tmp_path) == []


def test_export_refuses_what_it_cannot_do_in_one_line(tiny_run, cyclegan_run, tmp_path):
    cases = [((tiny_run, "tflite", None), "format=tflite: use onnx or torchscript"),
             ((tiny_run, "onnx", str(tmp_path / "g.pt")), "format=onnx writes a .onnx file"),
             ((cyclegan_run, "torchscript", None, "AtoA"), "direction=AtoA: use AtoB"),
             ((cyclegan_run, "torchscript", None, "AtoB", 0.5), "truncation=0.5: truncation applies to noise")]
    for args, message in cases:
        with pytest.raises(UserError) as err:
            export.export_run(*(str(a) if isinstance(a, os.PathLike) else a for a in args))
        assert message in one_line(err)
    assert not list(tmp_path.iterdir())

