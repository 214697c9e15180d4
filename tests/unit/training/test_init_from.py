"""trainer.init_from: a new run starts from another run's networks (G, D, the EMA copy) and from nothing else of it;
networks that do not fit, and checkpoints gantrain would not resume, are refused in one line; a fine-tuned run
resumes bitwise from its own checkpoint."""

import json
import shutil

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from gantrain import __version__
from gantrain.config.build import build_system
from gantrain.config.init_from import start_from
from gantrain.config.resume import resumed_config
from gantrain.errors import UserError
from gantrain.generate.model_card import started_from
from gantrain.training.checkpoint import load_checkpoint

WITH_EMA_AND_ADA = ("model.ema=0.9", "model.ada=0.6")


def assert_same(module: torch.nn.Module, saved: dict) -> None:
    here = module.state_dict()
    assert here.keys() == saved.keys()
    assert all(torch.equal(here[key], saved[key]) for key in here), [k for k in here if not torch.equal(here[k], saved[k])]


@pytest.fixture(scope="module")
def source(train, tmp_path_factory):
    """A 2-step run with an EMA and ADA whose checkpoint is doctored to show what must not be taken along: ADA's p
    at 0.5, an evaluation history and a best value."""
    run = train(*WITH_EMA_AND_ADA, "trainer.max_steps=2").run_dir
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["ada"]["p"] = torch.tensor(0.5)
    state["evaluations"] = [{"step": 2, "seconds": 1.0, "fid": 9.0}]
    state["best"] = {"metric": "fid", "value": 9.0, "step": 2}
    (run / "checkpoints" / "last.pt").unlink()
    torch.save(state, run / "checkpoints" / "last.pt")
    return run, state


def test_a_run_starts_from_another_runs_networks_and_nothing_else(train, source, tmp_path):
    run, state = source
    fresh = train(*WITH_EMA_AND_ADA, "trainer.max_steps=1", fit=False)
    tuned = train(*WITH_EMA_AND_ADA, "trainer.max_steps=1", f"trainer.init_from={run}", run_dir=tmp_path, fit=False)
    for name, module in (("generator", tuned.system.G), ("discriminator", tuned.system.D), ("ema", tuned.system.ema)):
        assert_same(module, state[name])
    assert float(tuned.system.ada.p) == 0.0  # adapts afresh
    assert tuned.step == 0 and not tuned.opt_g.state_dict()["state"] and not tuned.opt_d.state_dict()["state"]
    assert tuned.batches.state_dict() == fresh.batches.state_dict()  # the data from its start
    tuned.fit()
    assert tuned.opt_d.state_dict()["state"][0]["step"] == 1  # a fresh optimizer, one step old
    origin = {"run": str(run.resolve()), "checkpoint": str((run / "checkpoints" / "last.pt").resolve()), "step": 2,
              "gantrain_version": __version__, "model": None, "data": None,
              "networks": ["generator", "discriminator", "ema"]}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["init_from"] == origin and summary["evaluations"] == [] and summary["best"] is None
    assert load_checkpoint(tmp_path)["init_from"] == origin  # kept for the model card and for resumes
    assert started_from(origin) == f"`{run.resolve()}` at step 2, gantrain {__version__}"
    assert started_from(None).startswith("scratch")


def test_an_ema_the_source_did_not_have_starts_as_its_generator(train, tiny_run):
    tuned = train("model.ema=0.9", f"trainer.init_from={tiny_run}", fit=False)
    assert_same(tuned.system.ema.network, load_checkpoint(tiny_run)["generator"])


@pytest.mark.parametrize("family", ["resnet", "cyclegan"])
def test_families_whose_networks_fit_accept_it(train, tiny_cyclegan, make_data, family, tmp_path):
    overrides = (*tiny_cyclegan, f"data.root={make_data.unpaired(tmp_path / 'data', 4)}") if family == "cyclegan" else (
        "model=resnet", "model.generator.width=8", "model.discriminator.width=8")
    source = train(*overrides, "trainer.max_steps=1", base=("trainer=debug",), run_dir=tmp_path / "source")
    tuned = train(*overrides, f"trainer.init_from={tmp_path / 'source'}", base=("trainer=debug",), fit=False)
    state = load_checkpoint(tmp_path / "source")
    for name, module in tuned.system.pretrained_modules().items():
        assert_same(module, state[name])
    if family == "cyclegan":
        assert source.system.pools["a"].images and not tuned.system.pools["a"].images  # the pools start empty


@pytest.mark.parametrize("overrides, detail", [
    (("model.generator.width=16",), "does not fit this generator: main.0.weight is 100x32x4x4 in the checkpoint but "
                                    "100x64x4x4 here"),
    (("data.image_size=16",), "does not fit this generator: main.0.weight is 100x32x4x4 in the checkpoint but "
                              "100x16x4x4 here (it was trained on samples of 1x32x32, this data gives 1x16x16)"),
    (("model=mlp",), "does not fit this generator: net.0.weight (64x96 here) is not in the checkpoint"),
])
def test_networks_that_do_not_fit_are_refused_in_one_line(train, tiny, tiny_run, overrides, detail):
    base = ("trainer=debug",) if "model=mlp" in overrides else tiny
    with pytest.raises(UserError) as err:
        train(*overrides, f"trainer.init_from={tiny_run}", base=base, fit=False)
    assert str(err.value) == f"trainer.init_from={tiny_run}: checkpoint {tiny_run / 'checkpoints' / 'last.pt'} {detail}"


def test_checkpoints_are_refused_as_resume_refuses_them(compose, tiny, tiny_run, tmp_path):
    state = torch.load(tiny_run / "checkpoints" / "last.pt", weights_only=True)
    config = state["config"]
    foreign = dict(state, config={**config, "model": {**config["model"], "generator": {"_target_": "evil.Generator"}}})
    moved = config["loss"]["_target_"].replace("gantrain.systems.", "gantrain.")  # its path before 0.3.0
    old = dict(state, config={**config, "loss": {**config["loss"], "_target_": moved}})
    for name, content in (("foreign.pt", foreign), ("old.pt", old), ("bare.pt", {"format_version": 1}),
                          ("other.pt", {"weights": torch.zeros(1)})):
        torch.save(content, tmp_path / name)
    cfg = compose(*tiny)
    system = build_system(cfg, (1, 32, 32))

    def start(name: str, trust: bool = False) -> dict:
        cfg.trainer.init_from, cfg.trust_checkpoint = str(tmp_path / name), trust
        return start_from(cfg, system, (1, 32, 32))

    with pytest.raises(UserError, match=r"names evil.Generator \(at model.generator._target_\), which is not part of "
                                        r"gantrain; .* add trust_checkpoint=true$"):
        start("foreign.pt")
    assert start("foreign.pt", trust=True)["step"] == 4  # trusted: its weights fit (its config is never built)
    assert start("old.pt")["step"] == 4  # an old target is migrated before it is checked
    with pytest.raises(UserError, match="bare.pt has no saved config: it was not written by gantrain's Trainer$"):
        start("bare.pt")
    with pytest.raises(UserError, match="other.pt is not a gantrain checkpoint"):
        start("other.pt")


def test_a_fine_tuned_run_resumes_bitwise_from_its_own_checkpoint(train, tiny_run, tmp_path):
    """The resumed session must not load the start again: it continues from its own step 2, even when the source
    run is gone by then."""
    source = shutil.copytree(tiny_run, tmp_path / "source", ignore=shutil.ignore_patterns("step_*.pt"))
    steps = ("trainer.checkpoint_every=2", "trainer.sample_every=2", "model.discriminator.freeze=1",
             f"trainer.init_from={source}", "trainer.grad_accum=2")
    straight = train("trainer.max_steps=4", *steps, run_dir=tmp_path / "straight")
    train("trainer.max_steps=2", *steps, run_dir=tmp_path / "split")
    shutil.rmtree(source)
    resumed = train("trainer.max_steps=4", *steps, f"trainer.resume={tmp_path / 'split'}", run_dir=tmp_path / "split")
    assert_same(resumed.system, straight.system.state_dict())
    for a, b in ((straight.opt_d, resumed.opt_d), (straight.opt_g, resumed.opt_g)):
        torch.testing.assert_close(b.state_dict(), a.state_dict(), rtol=0, atol=0)
    started = json.loads((tmp_path / "split" / "summary.json").read_text())["init_from"]
    assert started["checkpoint"] == str((source / "checkpoints" / "last.pt").resolve())


def test_resuming_with_another_start_is_refused(compose):
    saved = OmegaConf.to_container(compose("trainer.init_from=/runs/a"), resolve=True)  # a fine-tuned run's config

    def resume(*overrides):
        cfg = compose("trainer.resume=/runs/b", *overrides)
        parsed = OverridesParser.create().parse_overrides(["trainer.resume=/runs/b", *overrides])
        return resumed_config(cfg, saved, {}, {}, parsed)

    assert resume("trainer.init_from=/runs/a").trainer.init_from == "/runs/a"  # the same command line, resumed
    with pytest.raises(UserError) as err:
        resume("trainer.init_from=/runs/c")
    assert str(err.value) == ("trainer.init_from=/runs/c: the run being resumed started from /runs/a, and a resumed run "
                              "continues from its own checkpoint; drop trainer.init_from (or start a new run without "
                              "trainer.resume)")
