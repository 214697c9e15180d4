"""The loop end to end in-process: exact resume, checkpoint contents, TensorBoard continuity."""

import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gantrain.training.checkpoint import load_checkpoint


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("extra", [(), ("trainer.n_critic=2", "loss=lsgan", "optim=rmsprop")])
def test_resume_is_bitwise_identical_to_a_straight_run(train, tmp_path, extra):
    steps = ("trainer.checkpoint_every=20", "trainer.sample_every=20", "trainer.log_every=5")
    straight = train("trainer.max_steps=40", *steps, *extra, run_dir=tmp_path / "straight")
    first = train("trainer.max_steps=20", *steps, *extra, run_dir=tmp_path / "split")
    assert first.step == 20
    resumed = train("trainer.max_steps=40", f"trainer.resume={tmp_path / 'split'}", *steps, *extra,
                    run_dir=tmp_path / "split")
    assert resumed.step == 40
    assert_same_weights(straight.system.G, resumed.system.G)
    assert_same_weights(straight.system.D, resumed.system.D)
    assert torch.equal(straight.opt_g.state_dict()["state"][0]["exp_avg_sq" if not extra else "square_avg"],
                       resumed.opt_g.state_dict()["state"][0]["exp_avg_sq" if not extra else "square_avg"])


def test_checkpoint_holds_everything_and_loads_weights_only(train, tmp_path):
    train("trainer.max_steps=6", "trainer.keep_checkpoints=2", run_dir=tmp_path)
    files = sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert files == ["last.pt", "step_0000004.pt", "step_0000006.pt"]
    state = torch.load(tmp_path / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    for key in ("generator", "discriminator", "optimizers", "scalers", "step", "rng", "fixed", "config", "format_version"):
        assert key in state, key
    assert state["step"] == 6 and set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["fixed"]["z"].shape == (16, 100)
    assert state["config"]["trainer"]["max_steps"] == 6
    assert not list((tmp_path / "checkpoints").glob(".*tmp*"))  # no temporary files left behind


def test_fixed_noise_survives_resume(train, tmp_path):
    first = train("trainer.max_steps=2", run_dir=tmp_path)
    # another seed on resume: noise drawn afresh would differ, so equality shows it came from the checkpoint
    resumed = train("trainer.max_steps=4", "seed=1", f"trainer.resume={tmp_path}", run_dir=tmp_path)
    assert torch.equal(first.fixed["z"], resumed.fixed["z"])


def test_resume_beyond_a_crash_purges_later_events(train, tmp_path):
    # the "crashed" run logged up to step 8 but its newest kept checkpoint is step 4
    train("trainer.max_steps=8", "trainer.checkpoint_every=4", "trainer.log_every=1", "trainer.keep_checkpoints=5",
          run_dir=tmp_path)
    (tmp_path / "checkpoints" / "last.pt").unlink()
    (tmp_path / "checkpoints" / "step_0000008.pt").unlink()
    time.sleep(1.1)  # event files sort by their creation second; a real resume is a later process anyway
    train("trainer.max_steps=10", "trainer.log_every=1", f"trainer.resume={tmp_path / 'checkpoints' / 'step_0000004.pt'}",
          run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/D")]
    assert steps == list(range(1, 11))


def test_tensorboard_has_the_promised_scalars_and_images(train, tmp_path):
    train("trainer.max_steps=4", "trainer.sample_every=2", run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("loss/D", "loss/G", "D(x)", "D(G(z))/before_D_step", "D(G(z))/after_D_step",
                "grad_norm/D", "grad_norm/G", "lr/G", "lr/D", "perf/images_per_sec"):
        assert tag in tags, tag
    assert {"real", "samples"} <= set(events.Tags()["images"])
    assert (tmp_path / "samples" / "real.png").is_file()
    from PIL import Image

    grids = sorted((tmp_path / "samples").glob("samples_*.png"))
    assert [p.name for p in grids] == ["samples_0000002.png", "samples_0000004.png"]  # every sample_every steps
    assert Image.open(tmp_path / "progress.gif").n_frames == len(grids)  # one frame per saved grid
    assert Image.open(tmp_path / "final.png").tobytes() == Image.open(grids[-1]).tobytes()  # the last grid


def test_toy_run_draws_a_scatter_plot(train, tmp_path):
    train("experiment=toy_gaussian", "trainer=debug", "trainer.max_steps=4", "trainer.grid_size=50", run_dir=tmp_path,
          base=())
    from PIL import Image

    img = Image.open(tmp_path / "final.png")
    assert img.size == (360, 360)
    colours = {c for _, c in img.getcolors(1 << 20)}
    assert (255, 127, 14) in colours and (31, 119, 180) in colours  # generated and real points


def test_max_steps_reached_trains_nothing_more(train, tmp_path):
    first = train("trainer.max_steps=2", run_dir=tmp_path)
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()}
    again = train("trainer.max_steps=2", f"trainer.resume={tmp_path}", run_dir=tmp_path)
    assert again.step == 2
    assert_same_weights(first.system.G, again.system.G)  # no update, not even one uncounted
    assert_same_weights(first.system.D, again.system.D)
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").iterdir()} == written  # nothing rewritten


def test_mismatched_checkpoint_is_refused(train, tiny_run, tmp_path):
    from gantrain.errors import UserError

    with pytest.raises(UserError, match="does not fit this generator"):
        train("trainer.max_steps=6", "model.generator.width=16", f"trainer.resume={tiny_run}", run_dir=tmp_path / "b")


def test_bf16_autocast_trains_on_cpu(train):
    trainer = train("trainer.max_steps=2", "trainer.amp=bf16", fit=False)
    seen = {"G": set(), "D": set()}  # the dtypes each network's output had
    for name in seen:
        getattr(trainer.system, name).register_forward_hook(lambda m, args, out, name=name: seen[name].add(out.dtype))
    trainer.fit()
    assert torch.bfloat16 in seen["G"] and torch.bfloat16 in seen["D"], seen  # autocast really ran both networks
    assert all(p.dtype == torch.float32 for p in trainer.system.parameters())  # master weights stay fp32
    assert all(torch.isfinite(p).all() for p in trainer.system.parameters())


def test_load_checkpoint_refuses_code(tmp_path):
    import pickle

    from gantrain.errors import UserError

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format_version": 1, "x": Evil()}, protocol=2))
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_learning_rates_decay_linearly_after_decay_start(train, tmp_path):
    trainer = train("trainer.max_steps=10", "trainer.decay_start=5", "trainer.log_every=1", "optim.lr=1e-3",
                    "optim.generator.lr=1e-3", run_dir=tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    lrs = {e.step: e.value for e in events.Scalars("lr/G")}
    assert lrs[5] == pytest.approx(1e-3)  # steps 1..6 run at the full rate: step 6 starts at decay_start
    assert [round(lrs[s] / 1e-3, 4) for s in range(6, 11)] == [1.0, 0.8, 0.6, 0.4, 0.2]  # the rate each step used
    assert trainer.opt_d.param_groups[0]["lr"] == pytest.approx(0.2e-3)
