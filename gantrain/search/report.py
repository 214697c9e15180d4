"""`gantrain-report DIR`: the runs under DIR (a sweep directory, or any folder of runs such as outputs/),
ranked by their best metric, as a console table, report.csv, report.md and one self-contained report.html
(final grids and metric curves embedded, no network needed to view it).

The best value of a run is the best over its evaluations, each with one fixed sampling seed, so the top
of many noisy runs flatters itself; `--rescore K` scores the top K runs' best checkpoints again with fresh
samples under other seeds, and the report marks those numbers as re-scored.
"""

import base64
import csv
import hashlib
import html
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf
from PIL import Image

from gantrain.metrics.scoring import EVALUATOR_KEYS, score_run
from gantrain.training.checkpoint import load_checkpoint
from gantrain.training.objective import HIGHER_IS_BETTER
from gantrain.training.summary import FILE, read_summary


@dataclass
class Run:
    path: Path
    name: str
    summary: dict
    params: dict = field(default_factory=dict)  # the overrides that differ between the runs
    rescored: list[float] = field(default_factory=list)

    @property
    def metric(self) -> str:
        return self.summary.get("best_metric") or "fid"

    @property
    def best(self) -> float | None:
        return (self.summary.get("best") or {}).get("value")

    @property
    def short_name(self) -> str:
        """The directory name, or for a long one (a search names trials by their parameters) a short id."""
        if len(self.name) <= 32:
            return self.name
        return f"trial-{hashlib.sha1(self.name.encode()).hexdigest()[:8]}"


# ------------------------------------------------------------------ finding and ranking
def find_runs(folder: Path) -> list[Run]:
    """Every directory under `folder` with a summary.json (earlier failed attempts of a sweep job excluded)."""
    runs = []
    for path in sorted(folder.rglob(FILE)):
        if any(part.startswith("failed-attempt-") for part in path.parts):
            continue
        summary = read_summary(path.parent)
        if summary is not None:
            name = str(path.parent.relative_to(folder)) if path.parent != folder else path.parent.name
            runs.append(Run(path.parent, name, summary))
    differing_overrides(runs)
    return runs


def shown(value: str) -> str:
    """An override's value for people: long floats (a search's learning rates) to 4 significant digits."""
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.4g}" if "." in value or "e" in value.lower() else value


def differing_overrides(runs: list[Run]) -> None:
    """Each run's key=value overrides that not every run shares (what tells the runs apart)."""
    parsed = [dict(o.split("=", 1) for o in run.summary.get("overrides", []) if "=" in o) for run in runs]
    keys = {k for p in parsed for k in p}
    shared = {k for k in keys if len({p.get(k) for p in parsed}) == 1}
    for run, p in zip(runs, parsed):
        run.params = {k: shown(v) for k, v in sorted(p.items()) if k not in shared}


def ranked(runs: list[Run]) -> list[Run]:
    """Best first by each run's recorded best (one scale for all runs; re-scoring is shown beside it),
    in the metric's direction; runs without a value last, in name order."""
    def key(run: Run):
        value = run.best
        if value is None or math.isnan(value):
            return (1, 0.0, run.name)
        return (0, -value if run.metric in HIGHER_IS_BETTER else value, run.name)
    return sorted(runs, key=key)


# ------------------------------------------------------------------ re-scoring
def rescore(runs: list[Run], top: int, seeds: int, num_samples: int | None = None, device: str = "auto") -> None:
    """The top runs' best checkpoints scored again with `seeds` fresh sampling seeds (gantrain-eval's path), with
    the run's own metric settings (the same extractor, so the same scale as its recorded value)."""


    for run in ranked(runs)[:top]:
        checkpoint = run.path / "checkpoints" / ("best.pt" if (run.path / "checkpoints" / "best.pt").is_file() else "last.pt")
        if not checkpoint.is_file():
            continue
        saved = load_checkpoint(checkpoint)["config"].get("metrics", {})
        for seed in range(1, seeds + 1):
            cfg = OmegaConf.create({k: saved[k] for k in EVALUATOR_KEYS if k in saved}
                                   | {"run": str(checkpoint), "metrics": [metric_family(run.metric)], "device": device,
                                      "data": {}, "trust_checkpoint": False}
                                   | ({"num_samples": num_samples} if num_samples else {}))
            values, _ = score_run(cfg, sample_seed=10_000 + seed)  # samples the run's own evaluations never drew
            run.rescored.append(float(values[run.metric]))


def metric_family(name: str) -> str:
    return "pr" if name in ("precision", "recall") else name


# ------------------------------------------------------------------ tables
COLUMNS = ("rank", "run", "status", "params", "best", "step", "rescored", "steps", "wall_s", "img_s")
FILE_COLUMNS = COLUMNS + ("path",)  # the CSV and JSON also give each run's directory


def rows(runs: list[Run]) -> list[dict]:
    out = []
    for i, run in enumerate(ranked(runs), 1):
        best = run.summary.get("best") or {}
        spread = f"{statistics.mean(run.rescored):.4g} ± {statistics.stdev(run.rescored):.2g} (n={len(run.rescored)})" \
            if len(run.rescored) > 1 else (f"{run.rescored[0]:.4g}" if run.rescored else "")
        out.append({
            "rank": i, "run": run.short_name, "status": run.summary.get("status", "?"),
            "params": " ".join(f"{k}={v}" for k, v in run.params.items()),
            "best": f"{run.metric} {best['value']:.4g}" if "value" in best else "",
            "step": best.get("step", ""), "rescored": spread, "steps": run.summary.get("steps", ""),
            "wall_s": f"{run.summary.get('wall_seconds', 0):.1f}", "img_s": f"{run.summary.get('images_per_sec', 0):.0f}",
            "path": str(run.path),
        })
    return out


def text_table(table: list[dict], limit: int | None = None) -> str:
    shown = table[:limit] if limit else table
    widths = {c: max([len(c)] + [len(str(r[c])) for r in shown]) for c in COLUMNS}
    line = lambda r: "  ".join(str(r[c]).ljust(widths[c]) for c in COLUMNS).rstrip()  # noqa: E731
    return "\n".join([line({c: c for c in COLUMNS})] + [line(r) for r in shown])


def markdown_table(table: list[dict]) -> str:
    escape = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(escape(r[c]) for c in COLUMNS) + " |" for r in table]) + "\n"


def write_csv(table: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FILE_COLUMNS)
        writer.writeheader()
        writer.writerows(table)


# ------------------------------------------------------------------ the HTML page
def svg_plot(points: list[tuple[float, float]], xlabel: str, ylabel: str, line: bool, log_x: bool = False,
             width: int = 300, height: int = 180) -> str:
    """A small self-contained SVG: a polyline (curves) or dots (a parameter against the metric)."""
    points = [(math.log10(x) if log_x else x, y) for x, y in points
              if y is not None and math.isfinite(y) and (not log_x or x > 0)]
    if not points:
        return "<p>no values</p>"
    # values over more than a decade (one diverged trial's FID of 1,000 beside tens) on a log scale, or the rest
    # would be flattened onto the axis
    log_y = all(y > 0 for _, y in points) and max(y for _, y in points) / min(y for _, y in points) > 20
    points = [(x, math.log10(y) if log_y else y) for x, y in points]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    shown = (lambda y: 10 ** y) if log_y else (lambda y: y)  # noqa: E731
    sx = lambda x: 40 + (x - x0) / ((x1 - x0) or 1) * (width - 50)  # noqa: E731
    sy = lambda y: height - 30 - (y - y0) / ((y1 - y0) or 1) * (height - 45)  # noqa: E731
    shapes = (f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="'
              + " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points) + '"/>') if line else ""
    shapes += "".join(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#1f77b4"/>' for x, y in points)
    axis = (f'<text x="40" y="{height - 8}" font-size="11">{html.escape(xlabel)}{" (log10)" if log_x else ""}: '
            f'{x0:.3g} .. {x1:.3g}</text><text x="2" y="12" font-size="11">{html.escape(ylabel)}{" (log scale)" if log_y else ""}: '
            f'{shown(y0):.4g} .. {shown(y1):.4g}</text>')
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'style="background:#fafafa;border:1px solid #ddd">{axis}{shapes}</svg>')


def image_uri(path: Path, max_side: int = 256) -> str | None:
    if not path.is_file():
        return None

    image = Image.open(path)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def parameter_plots(runs: list[Run]) -> str:
    """For a search: each varied hyperparameter against the run's score (numbers; choices by index)."""
    keys = sorted({k for run in runs for k in run.params})
    plots = []
    for key in keys:
        values = [run.params.get(key) for run in runs]
        numbers = all(is_number(v) for v in values if v is not None)
        choices = sorted({v for v in values if v is not None})
        points = [(float(v) if numbers else float(choices.index(v)), run.best)
                  for run, v in zip(runs, values) if v is not None and run.best is not None]
        log_x = numbers and all(float(v) > 0 for v in values if v is not None) and \
            max(float(v) for v in values if v is not None) / max(min(float(v) for v in values if v is not None), 1e-30) > 20
        label = key if numbers else f"{key} ({', '.join(choices)})"
        plots.append(f"<figure>{svg_plot(points, label, runs[0].metric, line=False, log_x=log_x)}"
                     f"<figcaption>{html.escape(label)}</figcaption></figure>")
    return "".join(plots)


def is_number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def html_page(folder: Path, runs: list[Run], table: list[dict]) -> str:
    order = ranked(runs)
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r[c]))}</td>" for c in COLUMNS) + "</tr>" for r in table)
    cards = []
    for i, run in enumerate(order, 1):
        grid = image_uri(run.path / "final.png")
        curve = [(e["step"], e.get(run.metric)) for e in run.summary.get("evaluations", [])]
        cards.append(f'<div class="card"><h3 title="{html.escape(str(run.path))}">#{i} {html.escape(run.short_name)}</h3>'
                     f'<p>{html.escape(" ".join(f"{k}={v}" for k, v in run.params.items()) or "(no differing overrides)")}</p>'
                     + (f'<img src="{grid}" alt="final grid">' if grid else "<p>no final.png</p>")
                     + svg_plot(curve, "step", run.metric, line=True) + "</div>")
    search = parameter_plots(runs) if any(run.params for run in runs) else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>gantrain report: {html.escape(str(folder))}</title>
<style>body{{font-family:sans-serif;margin:20px}} table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;
padding:3px 6px;font-size:13px}} .card{{display:inline-block;vertical-align:top;margin:8px;padding:8px;border:1px solid #ddd;
width:320px}} .card img{{width:256px;image-rendering:pixelated}} figure{{display:inline-block;margin:6px}}</style></head>
<body><h1>gantrain report</h1><p>{len(runs)} runs under {html.escape(str(folder))}, ranked by {html.escape(order[0].metric if order else "")}
(best over each run's evaluations; "rescored": mean ± std over fresh sampling seeds).</p>
<table><tr>{head}</tr>{body}</table>
{"<h2>Hyperparameters against " + html.escape(order[0].metric) + "</h2>" + search if search else ""}
<h2>Runs</h2>{"".join(cards)}</body></html>
"""


# ------------------------------------------------------------------ the command
def write_report(folder: Path, out: Path | None = None, rescore_top: int = 0, seeds: int = 3,
                 num_samples: int | None = None) -> tuple[list[dict], Path]:
    runs = find_runs(folder)
    if not runs:
        raise FileNotFoundError(f"no runs under {folder}: point at a sweep directory or a folder of run directories")
    if rescore_top:
        rescore(runs, rescore_top, seeds, num_samples)
    table = rows(runs)
    out = out or folder
    out.mkdir(parents=True, exist_ok=True)
    write_csv(table, out / "report.csv")
    (out / "report.md").write_text(markdown_table(table))
    (out / "report.html").write_text(html_page(folder, runs, table))
    (out / "report.json").write_text(json.dumps(table, indent=2) + "\n")
    return table, out
