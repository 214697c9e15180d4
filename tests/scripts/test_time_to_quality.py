"""scripts/time_to_quality.py without training: reading a curve at a time, the study table, how runs shared the
machine, the plot and grids, and its runner (a fake command stands in for gantrain)."""

import json
import math
import sys

import pytest
from PIL import Image


@pytest.fixture(scope="module")
def ttq(load_script):
    return load_script("time_to_quality")


def curve(points, steps=100, parallel=1, threads=2):
    return {"points": points, "steps": steps, "parallel": parallel, "threads": threads}


def test_value_at_interpolates_in_log_fid_and_holds_the_last(ttq):
    points = [(10.0, 100.0, 50), (20.0, 1.0, 100)]
    assert ttq.value_at(points, 5.0) is None  # before the first evaluation
    assert ttq.value_at(points, 10.0) == 100.0
    assert math.isclose(ttq.value_at(points, 15.0), 10.0)  # halfway in log FID: the geometric mean
    assert ttq.value_at(points, 60.0) == 1.0  # the run ended earlier: its last value


def test_table_gives_mean_spread_seeds_and_says_when_seeds_are_missing(ttq):
    results = {"a": [curve([(10.0, 4.0, 1)]), curve([(10.0, 6.0, 1)])],
               "late": [curve([(10.0, 3.0, 1)]), curve([(30.0, 5.0, 1)], steps=7)]}
    rows = ttq.table(results, [20.0]).splitlines()
    assert rows[0] == "| recipe | FID at 20 s | steps trained (per seed) |"
    assert rows[2] == f"| a | 5.00 ± {math.sqrt(2):.2f} (4.00, 6.00) | 100, 100 |"
    assert rows[3] == "| late | 3.00 ± 0.00 (3.00; 1 of 2 seeds evaluated by then) | 100, 7 |"
    assert "n/a" in ttq.table({"a": [curve([(30.0, 1.0, 1)])]}, [20.0])


def test_band_and_conditions(ttq):
    curves = [curve([(10.0, 2.0, 1), (20.0, 1.0, 2)]), curve([(12.0, 4.0, 1)], parallel=2, threads=1)]
    assert ttq.band(curves) == [(11.0, 3.0, 2.0, 4.0)]  # only the evaluations every seed reached
    cores = ttq.os.cpu_count()
    assert ttq.conditions({"a": [curve([], threads=cores)]}) == f"{cores} CPU cores"
    assert ttq.conditions({"a": [curve([], parallel=2, threads=1)]}) == "2 runs at a time, 1 thread each"


def test_plot_and_grids_are_written(ttq, tmp_path):
    runs = {}
    for name, shade in (("neither (x)", 40), ("ADA", 200)):
        run_dir = tmp_path / name / "seed0"
        (run_dir / "samples").mkdir(parents=True)
        Image.new("RGB", (32, 32), (shade,) * 3).save(run_dir / "final.png")
        Image.new("RGB", (32, 32), (255, 0, 0)).save(run_dir / "samples" / "real.png")
        runs[name] = run_dir
    results = {name: [curve([(10.0, 5.0, 1), (20.0, 2.0, 2)])] for name in runs}
    ttq.plot(results, "t", tmp_path / "plot.png")
    ttq.grids(runs, "t", tmp_path / "grids.png")
    assert Image.open(tmp_path / "plot.png").size[0] > 300
    grids = Image.open(tmp_path / "grids.png")
    assert grids.mode == "P" and grids.size[0] > 3 * 100  # three panels, palette PNG


FAKE_RUN = """import json, pathlib, sys
run = pathlib.Path(sys.argv[1]); run.mkdir(parents=True)
if sys.argv[2] == "fail":
    sys.exit("boom")
(run / "summary.json").write_text(json.dumps({"wall_seconds": 0.0, "steps": 5, "train_seconds": 1.5,
    "evaluations": [{"seconds": 1.5, "fid": 3.0, "step": 5}]}))
"""


def test_runner_records_curves_skips_finished_runs_and_names_a_failure(ttq, tmp_path, monkeypatch):
    monkeypatch.setattr(ttq, "REPO", tmp_path)
    (tmp_path / "fake.py").write_text(FAKE_RUN)
    jobs = [([sys.executable, "fake.py", str(tmp_path / "r" / f"seed{s}"), "ok"], tmp_path / "r" / f"seed{s}")
            for s in (0, 1)]
    ttq.run_all(jobs, parallel=2)
    saved = json.loads((tmp_path / "r" / "seed1" / "curve.json").read_text())
    assert saved["steps"] == 5 and saved["parallel"] == 2 and saved["threads"] == max(ttq.os.cpu_count() // 2, 1)
    assert saved["points"][0][1:] == [3.0, 5] and saved["points"][0][0] >= 1.5  # start-up + training seconds
    ttq.run_all([([sys.executable, "fake.py", str(tmp_path / "r" / "seed0"), "fail"], tmp_path / "r" / "seed0")], 1)
    with pytest.raises(SystemExit, match=r"failed \(.*seed2\.log\)"):  # a finished run was kept; this one fails
        ttq.run_all([([sys.executable, "fake.py", str(tmp_path / "r" / "seed2"), "fail"], tmp_path / "r" / "seed2")], 1)
    assert "boom" in (tmp_path / "r" / "seed2.log").read_text()
