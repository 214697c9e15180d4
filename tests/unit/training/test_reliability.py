"""Interruptions, kills, NaNs, damaged checkpoints and bad input: work is never lost, errors are one line."""

import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from gantrain.errors import DiskFull, TrainingDiverged, UserError
from gantrain.training.checkpoint import load_checkpoint, numbered_checkpoints, read_checkpoint

EVERY_STEP = ("trainer.log_every=1",)  # with the tiny settings: scalars of every step
LONG = ["trainer.max_steps=100000", "trainer.checkpoint_every=3", "trainer.sample_every=100000"]


def wait_for(predicate, timeout: float = 60.0, every: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(every)


def newest_complete_step(run_dir: Path) -> int | None:
    """The highest step among numbered checkpoints that read back in full."""
    for path in numbered_checkpoints(run_dir / "checkpoints")[::-1]:
        try:
            return read_checkpoint(path)["step"]
        except UserError:
            continue
    return None


def newest_numbered_step(run_dir: Path) -> int:
    """The step in the name of the newest numbered checkpoint (-1 for none): cheap to poll, unlike reading the
    26 MB files. A name appears only once its file is complete (written under a temporary name, then renamed)."""
    paths = numbered_checkpoints(run_dir / "checkpoints")
    return int(paths[-1].stem.split("_")[-1]) if paths else -1


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_saves_and_resumes(cli, tiny, tmp_path, signum):
    run_dir = tmp_path / "run"
    proc = cli.start("gantrain", *tiny, *EVERY_STEP, *LONG, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    wait_for(lambda: (run_dir / "checkpoints" / "step_0000003.pt").exists())
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert f"Resume with: gantrain trainer.resume={run_dir}" in err.strip().splitlines()[-1]
    assert "Traceback" not in err
    state = load_checkpoint(run_dir)
    stopped_at = state["step"]
    assert f"at step {stopped_at}/" in err  # the checkpoint is of the step the message names
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir))
    events.Reload()
    assert events.Scalars("loss/D")[-1].step == stopped_at  # TensorBoard was flushed up to the last step
    if signum != signal.SIGTERM:  # one handler for both signals: the checkpoint it wrote resumes (below, once)
        return
    resumed = cli.run("gantrain", f"trainer.resume={run_dir}", f"trainer.max_steps={stopped_at + 2}", cwd=tmp_path,
                      timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(run_dir)["step"] == stopped_at + 2


def test_sigkill_at_random_moments_never_loses_the_newest_complete_checkpoint(cli, tmp_path):
    """8 kills, half of them the moment a checkpoint file is being written; each time the run resumes."""
    rng = random.Random(0)
    run_dir, ckpt = tmp_path / "run", tmp_path / "run" / "checkpoints"
    args = ["model=mlp", "data.image_size=28", "trainer=debug", "trainer.max_steps=100000", "trainer.checkpoint_every=2",
            "trainer.log_every=1", "trainer.sample_every=100000", "trainer.keep_checkpoints=4"]
    during_write, steps = 0, []
    for kill in range(8):
        before = newest_complete_step(run_dir)
        resume = [f"trainer.resume={run_dir}"] if before is not None else []
        proc = cli.start("gantrain", *args, *resume, f"hydra.run.dir={run_dir}", cwd=tmp_path)
        mine = f"tmp{proc.pid}"
        if kill % 2:  # the moment this process starts writing a checkpoint file
            wait_for(lambda: ckpt.is_dir() and any(p.name.endswith(mine) for p in ckpt.iterdir()), every=0.002)
        else:  # a random moment after this process wrote a checkpoint of its own
            wait_for(lambda: newest_numbered_step(run_dir) > (before or -1), every=0.01)
            time.sleep(rng.uniform(0.0, 0.5))
        proc.kill()
        proc.communicate()
        during_write += any(p.name.endswith(mine) for p in ckpt.iterdir())
        expected = newest_complete_step(run_dir)
        assert expected is not None and expected > (before or -1) - 1
        state = load_checkpoint(run_dir)
        assert state["step"] == expected, f"kill {kill}: loaded step {state['step']}, newest complete is {expected}"
        assert all(torch.isfinite(v).all() for v in state["generator"].values())
        steps.append(expected)
    assert steps == sorted(steps) and steps[-1] >= 8  # every restart resumed and went further
    assert during_write >= 3  # the kills really hit checkpoint writes


def test_damaged_checkpoint_is_reported_and_the_previous_one_used(train, tmp_path, caplog):
    train(*EVERY_STEP, "trainer.max_steps=6", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=5", run_dir=tmp_path)
    newest = tmp_path / "checkpoints" / "step_0000006.pt"  # last.pt is a hard link to it: damaged too
    newest.write_bytes(newest.read_bytes()[:1000])
    state = load_checkpoint(tmp_path)
    assert state["step"] == 4
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("cannot read checkpoint" in w and "step_0000006" not in w.split(";")[1] for w in warnings)
    assert all("\n" not in w for w in warnings)


def test_nan_stops_the_run_naming_the_step_and_keeps_good_checkpoints(train, tmp_path):
    trainer = train("trainer.max_steps=40", "trainer.checkpoint_every=1", "trainer.log_every=5", "optim=sgd",
                    "optim.lr=1e12", run_dir=tmp_path, fit=False)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at step (\d+).*optim.lr.*fp16.*last good checkpoint") as info:
        trainer.fit()
    bad_step = int(str(info.value).split("at step ")[1].split(":")[0])
    saved = [read_checkpoint(p) for p in numbered_checkpoints(tmp_path / "checkpoints")]
    assert saved and all(s["step"] < bad_step for s in saved)
    for state in saved:
        assert all(torch.isfinite(v).all() for v in state["generator"].values() if v.is_floating_point())


def test_nan_policy_skip_drops_bad_updates_and_counts_them(train):
    trainer = train(*EVERY_STEP, "trainer.max_steps=12", "trainer.nan_policy=skip", "optim=sgd", "optim.lr=1e12")
    assert trainer.step == 12 and trainer.skipped > 0
    assert all(torch.isfinite(p).all() for p in trainer.system.parameters())


# Code (run here and in a CLI subprocess) for a disk that fills up while one checkpoint file is written: that file
# gets `room` bytes, then the write fails with ENOSPC, as a real one does (torch.save turns it into "unexpected pos").
FULL_DISK = """
import errno, io


def full_disk_open(target, room=1000):
    class Volume(io.FileIO):
        def __init__(self, path):
            super().__init__(path, "w")
            self.room = room if target in str(path) else None

        def write(self, data):
            data = memoryview(data).cast("B")
            if self.room is not None and len(data) > self.room:
                super().write(data[:self.room])
                self.room = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            if self.room is not None:
                self.room -= len(data)
            return super().write(data)

    return lambda path, mode="r": io.BufferedWriter(Volume(path)) if "w" in mode else open(path, mode)
"""


def full_disk_open(target: str):
    namespace = {}
    exec(FULL_DISK, namespace)
    return namespace["full_disk_open"](target)


def test_full_disk_stops_in_one_line_and_keeps_the_good_checkpoints(train, tmp_path, monkeypatch):
    """The last checkpoint (written by finish(), outside the loop's clean-up) does not fit: one line naming the
    file, the space and the checkpoint to resume from; no temp file left filling the disk; TensorBoard flushed."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import gantrain.training.checkpoint

    trainer = train(*EVERY_STEP, "trainer.max_steps=5", "trainer.checkpoint_every=2", "trainer.keep_checkpoints=5",
                    run_dir=tmp_path, fit=False)
    monkeypatch.setattr(gantrain.files, "open", full_disk_open("step_0000005"), raising=False)
    with pytest.raises(DiskFull) as info:
        trainer.fit()
    message, folder = str(info.value), tmp_path / "checkpoints"
    size = (folder / "step_0000004.pt").stat().st_size / 1e6  # the estimate: the previous checkpoint's size
    assert "\n" not in message
    assert f"no space left on the disk to write {folder / 'step_0000005.pt'}: it needs about {size:.1f} MB" in message
    assert f"the last good checkpoint is {folder / 'step_0000004.pt'}" in message
    assert message.endswith(f"resume with: gantrain trainer.resume={tmp_path}")
    assert sorted(p.name for p in folder.iterdir()) == ["last.pt", "step_0000002.pt", "step_0000004.pt"]  # no temp file
    assert EventAccumulator(str(tmp_path)).Reload().Scalars("loss/D")[-1].step == 5
    assert trainer.logger.writer.file_writer is None  # TensorBoard flushed and closed (SummaryWriter.close)
    monkeypatch.delattr(gantrain.files, "open")
    resumed = train(*EVERY_STEP, "trainer.max_steps=6", f"trainer.resume={tmp_path}", run_dir=tmp_path, fit=False)
    assert resumed.load(str(tmp_path)) == 4
    resumed.fit()
    assert load_checkpoint(tmp_path)["step"] == 6


def test_full_disk_through_the_cli_exits_1_in_one_line(cli, tiny, tmp_path):
    code = FULL_DISK + ("import sys, gantrain.files, gantrain.cli\n"
                        "gantrain.files.open = full_disk_open('step_0000002')\n"
                        "sys.argv[0] = 'gantrain'\ngantrain.cli.train()")
    proc = cli.run("-c", code, *tiny, *EVERY_STEP, "trainer.max_steps=2", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
                   timeout=120)
    assert proc.returncode == 1, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gantrain: error: no space left on the disk to write ") and "step_0000002.pt" in last, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list((tmp_path / "run" / "checkpoints").iterdir())  # not even the partial file


def test_atomic_save_removes_the_partial_file_and_tells_a_full_disk_from_other_failures(tmp_path, monkeypatch):
    """torch.save may report a full disk only as "unexpected pos" (the OSError lost): then free space decides."""
    import shutil

    import gantrain.files as checkpoint

    def broken_save(obj, f):
        f.write(b"x" * 100)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")

    monkeypatch.setattr(checkpoint.torch, "save", broken_save)
    state = {"w": torch.zeros(500_000)}  # 2 MB of tensors
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1.5e6, 1.5e6))
    with pytest.raises(DiskFull, match=r"to write .*x.pt: it needs about 2.0 MB, 1.5 MB are free"):
        checkpoint.atomic_save(state, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 0, 10**9))
    with pytest.raises(RuntimeError, match="unexpected pos"):  # plenty of space: not a full disk, reported as it is
        checkpoint.atomic_save(state, tmp_path / "x.pt")
    assert not list(tmp_path.iterdir())


def test_streamed_folder_skips_a_file_damaged_after_the_scan(image_tree, tmp_path):
    from gantrain.data.folder import folder

    data = folder(str(image_tree), image_size=8, in_memory=False, workers=0)
    next(iter(image_tree.rglob("*.png"))).write_bytes(b"damaged")
    batches = data.batches(12, 0, torch.device("cpu"))
    batch = next(batches)
    assert batch["real"].shape[0] == 11 and batches.unreadable == 1


BAD_COMMAND_LINES = {
    "unknown key": (["trainer.max_step=3"], "trainer.max_step is not a config key (did you mean trainer.max_steps?)"),
    "unknown option": (["model=dcgn"], "model=dcgn is not an option of model (did you mean dcgan?)"),
    "wrong type": (["trainer.batch_size=many"], "trainer.batch_size=many: expected a positive integer"),
    "non-positive steps": (["trainer.max_steps=0"], "trainer.max_steps=0: expected a positive integer"),
    "negative lr": (["optim.lr=-0.1"], "optim.lr=-0.1: expected a positive number"),
    "bad amp": (["trainer.amp=fp8"], "trainer.amp=fp8: expected false, bf16 or fp16"),
    "no cuda": (["trainer.device=cuda:3"], "trainer.device=cuda:3"),
    "unwritable dir": (["hydra.run.dir=/etc/passwd/run"], "cannot create the run directory /etc/passwd/run"),
    "bad size": (["trainer=debug", "data.image_size=48"], "model=dcgan cannot make 48x48 images"),
    "missing data": (["data=folder", "data.root=/nonexistent"], "data.root=/nonexistent: expected an existing folder"),
    "bad resume": (["trainer.resume=/nonexistent"], "trainer.resume=/nonexistent: expected an existing path"),
    "syntax": (["trainer.max_steps=[1,"], "cannot read the command line"),
    "no data.root": (["data=folder"], "data.root has no value: add data.root=..."),
}


@pytest.mark.parametrize("case", list(BAD_COMMAND_LINES))
def test_bad_input_is_one_line_with_exit_status_2(cli, case, tmp_path):
    args, expected = BAD_COMMAND_LINES[case]
    proc = cli.run("gantrain", *args, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("gantrain: error: ") and expected in last, proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["data.image_size=48", "optim.lr=abc"])  # refused when built; by the schema
def test_hydra_full_error_shows_the_trace(cli, tmp_path, bad):
    proc = cli.run("gantrain", "trainer=debug", bad, env={**os.environ, "HYDRA_FULL_ERROR": "1"},
                   cwd=tmp_path, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_a_failing_sweep_job_does_not_stop_the_others(cli, tiny, tmp_path):
    proc = cli.run("gantrain", "-m", *tiny, *EVERY_STEP, "optim.lr=1e-4,-1,2e-4", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                   cwd=tmp_path)
    assert proc.returncode == 1
    assert (tmp_path / "sweep" / "0" / "checkpoints" / "last.pt").is_file()
    assert (tmp_path / "sweep" / "2" / "checkpoints" / "last.pt").is_file()
    assert "2 of 3 jobs succeeded" in proc.stderr
    assert "job 1 (" in proc.stderr and "optim.lr=-1" in proc.stderr and "optim.lr=-1: expected a positive number" in proc.stderr


def test_checkpoint_of_another_image_size_is_refused_naming_both(train, tiny_run, tmp_path):
    with pytest.raises(UserError, match=r"trained on samples of shape 1x32x32, this data gives 1x16x16"):
        train("trainer.max_steps=6", "data.image_size=16", f"trainer.resume={tiny_run}", run_dir=tmp_path / "b")


def test_images_smaller_than_the_target_are_resized_up(tmp_path):
    from PIL import Image

    from gantrain.data.folder import folder

    for i in range(3):
        Image.new("RGB", (10, 6), (200, 10 * i, 0)).save(tmp_path / f"{i}.png")
    data = folder(str(tmp_path), image_size=32)  # Resize(32) on the short side, then CenterCrop(32)
    assert data.shape == (3, 32, 32)
    assert (data.x[:, 0] > 150).all()  # the colour fills the crop: upscaled, not padded
