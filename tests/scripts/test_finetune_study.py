"""scripts/finetune_study.py without training: what each arm runs (every command passes gantrain's command-line
check), the table and the plain verdicts (it ran end to end at a tiny scale by hand: its docstring)."""

import json
from pathlib import Path

import pytest

from gantrain.cli.checks import check_command_line


@pytest.fixture(scope="module")
def study(load_script):
    return load_script("finetune_study")


def test_every_arm_trains_the_same_networks_on_the_same_images_for_the_same_time(study, tmp_path):
    source = tmp_path / "source" / "seed1"
    source.mkdir(parents=True)  # trainer.init_from must name an existing run
    commands = {arm: study.arm_command(arm, 300, 1, source, 120, 400, 2, tmp_path / arm) for arm in study.ARMS}
    for arm, command in commands.items():
        overrides = command[3:]  # after `python -m gantrain`
        assert {"data=digits", "data.limit=300", "trainer.max_seconds=120", "seed=1", "model.generator.width=32",
                "model.discriminator.width=32"} <= set(overrides), arm
        assert (f"trainer.init_from={source}" in overrides) == (arm != "scratch")
        assert ("model.discriminator.freeze=2" in overrides) == (arm == "finetune+FreezeD")
        check_command_line(overrides)
    check_command_line(study.source_command(0, "data", 3000, tmp_path / "source")[3:])


def curve(*fids, steps=100):
    return {"points": [(10.0 * i, fid, 10 * i) for i, fid in enumerate(fids, 1)], "steps": steps, "train_seconds": 20.0,
            "final": {"confidence_ratio": 0.9, "class_shares": [0.1] * 10, "nn_ratio": 1.2, "precision": 0.5,
                      "recall": 0.6}}


def test_table_and_verdicts(study):
    results = {100: {"scratch": [curve(50, 40), curve(50, 44)], "finetune": [curve(30, 20), curve(30, 22)],
                     "finetune+FreezeD": [curve(45, 41), curve(45, 45)]}}
    rows = study.table(results).splitlines()
    assert rows[2].startswith("| 100 | scratch | 42.00 ± 2.83 (40.00, 44.00) | 42.00 ± 2.83 | 0.900 ± 0.000 |")
    assert study.verdicts(results) == [
        "100 images: finetune helps (FID -21.00 against scratch; seeds' spread 4.24)",
        "100 images: finetune+FreezeD makes no clear difference (FID +1.00 against scratch; seeds' spread 5.66)"]


def test_a_run_counts_as_done_only_when_it_finished(study, tmp_path):
    assert not study.finished(tmp_path)
    for status, done in (("interrupted", False), ("finished", True), ("stopped_early", True)):
        Path(tmp_path / "summary.json").write_text(json.dumps({"status": status}))
        assert study.finished(tmp_path) is done
