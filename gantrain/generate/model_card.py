"""An exported generator's model card: what goes in and out, how it was trained and scored, how to load it
(JSON for programs, Markdown for people), written beside the file."""

import hashlib
import json
import os
from importlib.metadata import version
from pathlib import Path

import torch
import yaml
from torch import Tensor

from gantrain import __version__
from gantrain.systems.base import System
from gantrain.training.summary import read_summary

EXAMPLE_BATCH = 16  # the loading example's batch: yet another size, since the batch dimension is dynamic
SUMMARY_KEYS = ("status", "steps", "best_metric", "best", "final_metrics")


def model_card(state: dict, system: System, path: Path, format: str, check: dict[str, Tensor], difference: float,
               batch: int, direction: str, truncation: float | None) -> dict:
    shape = list(state["data_shape"])
    runtime = f"onnxruntime {version_of('onnxruntime')}" if format == "onnx" else f"torch.jit {torch.__version__}"
    card = {
        "file": path.name, "format": format, "bytes": path.stat().st_size, "sha256": sha256(path),
        "network": network_name(state, system, direction),
        "inputs": [{"name": name, "shape": ["batch", *value.shape[1:]], "dtype": str(value.dtype).removeprefix("torch.")}
                   for name, value in check.items()],
        "outputs": [{"name": "images", "shape": ["batch", *shape], "dtype": "float32", "range": [-1, 1]}],
        "data_shape": shape, "value_range": [-1, 1],
        "latent": None if system.translates else {"size": system.z_dim, "distribution": system.z_dist,
                                                  "truncation": truncation},
        "classes": system.num_classes,
        "direction": direction if system.translates else None,
        "check": {"max_abs_difference": difference, "tolerance": 1e-4, "batch": batch, "runtime": runtime},
        "source": {"checkpoint": state["path"], "step": state["step"], "trained_with": state.get("gantrain_version"),
                   "exported_with": __version__, "torch": torch.__version__,
                   "started_from": state.get("init_from")},  # trainer.init_from: the run it was fine-tuned from
        "training_config": state.get("config", {}),
        "metrics": run_metrics(Path(state["path"])),
    }
    card["loading_example"] = loading_example(card)
    return card


def version_of(package: str) -> str:

    return version(package)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def network_name(state: dict, system: System, direction: str) -> str:
    if system.translates:
        return f"G_{'AB' if direction == 'AtoB' else 'BA'} ({direction})"
    return "EMA generator" if "ema" in state else "generator"  # the checkpoint keeps an "ema" entry when there is one


def run_metrics(checkpoint: Path) -> dict:
    """The run's recorded numbers: summary.json's outcome and metrics.json (gantrain-eval out=RUN/metrics.json),
    when the run directory holding the checkpoint has them."""
    folder = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    found = {}
    summary = read_summary(folder)
    if summary:
        found["summary"] = {key: summary.get(key) for key in SUMMARY_KEYS}
    try:
        found["metrics.json"] = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        pass
    return found


# ------------------------------------------------------------------ how to load it
def loading_example(card: dict) -> str:
    """Three lines that load the file and make a batch of images, in the file's own runtime."""
    onnx = card["format"] == "onnx"
    arguments = [input_expression(spec, card, onnx) for spec in card["inputs"]]
    shape = ", ".join(str(s) for s in [EXAMPLE_BATCH if card["latent"] else 4, *card["data_shape"]])
    comment = f"  # ({shape}) float32 in [-1, 1]"
    if onnx:
        truncated = card["latent"] and card["latent"]["truncation"] is not None
        feed = ", ".join(f'"{spec["name"]}": {arg}' for spec, arg in zip(card["inputs"], arguments))
        return (f"import numpy as np, onnxruntime as ort{', scipy.stats' if truncated else ''}\n"
                f'session = ort.InferenceSession("{card["file"]}")\n'
                f"images = session.run(None, {{{feed}}})[0]{comment}")
    return (f"import torch\n"
            f'generator = torch.jit.load("{card["file"]}")\n'
            f"images = generator({', '.join(arguments)}).detach(){comment}")


def input_expression(spec: dict, card: dict, onnx: bool) -> str:
    """A batch for one input, in numpy (ONNX) or torch (TorchScript) spelling."""
    size = spec["shape"][1:]
    if spec["name"] == "labels":
        return f"np.arange({EXAMPLE_BATCH}, dtype=np.int64) % {card['classes']}" if onnx else \
            f"torch.arange({EXAMPLE_BATCH}) % {card['classes']}"
    dims = ", ".join(str(d) for d in [EXAMPLE_BATCH if card["latent"] else 4, *size])
    if spec["name"] == "source":  # stand-ins for the user's own images, scaled to [-1, 1]
        return f"np.random.uniform(-1, 1, ({dims})).astype(np.float32)" if onnx else f"torch.rand({dims}) * 2 - 1"
    t = card["latent"]["truncation"]
    if card["latent"]["distribution"] == "uniform":
        return f"np.random.uniform(-1, 1, ({dims})).astype(np.float32)" if onnx else f"torch.rand({dims}) * 2 - 1"
    if t is not None:  # N(0, 1) restricted to [-t, t]: what redrawing every component beyond t gives
        return f"scipy.stats.truncnorm.rvs({-t}, {t}, size=({dims})).astype(np.float32)" if onnx else \
            f"torch.nn.init.trunc_normal_(torch.empty({dims}), a={-t}, b={t})"
    return f"np.random.randn({dims}).astype(np.float32)" if onnx else f"torch.randn({dims})"


# ------------------------------------------------------------------ files
def write_card(card: dict, path: Path) -> list[Path]:
    """<file>.card.json and <file>.card.md beside the exported file, each written whole."""
    json_path, md_path = path.with_name(path.name + ".card.json"), path.with_name(path.name + ".card.md")
    write_whole(json_path, json.dumps(card, indent=2, default=str) + "\n")
    write_whole(md_path, markdown(card))
    return [json_path, md_path]


def write_whole(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def markdown(card: dict) -> str:
    inputs = "; ".join(f"`{i['name']}` {i['dtype']} ({', '.join(map(str, i['shape']))})" for i in card["inputs"])
    output = card["outputs"][0]
    latent = card["latent"]
    rows = [
        ("file", f"`{card['file']}` ({card['format']}, {card['bytes']:,} bytes, sha256 {card['sha256'][:16]}...)"),
        ("network", card["network"]),
        ("inputs", inputs),
        ("output", f"`images` float32 ({', '.join(map(str, output['shape']))}) in [-1, 1]"),
        ("latent", "none (it translates images)" if latent is None else
         f"{latent['size']} values, {latent['distribution']}"
         + (f", truncated to [-{latent['truncation']}, {latent['truncation']}]" if latent["truncation"] is not None else "")),
        ("classes", str(card["classes"]) if card["classes"] else "unconditional"),
        ("check", f"max abs difference {card['check']['max_abs_difference']:.3g} from PyTorch on a batch of "
                  f"{card['check']['batch']} ({card['check']['runtime']}; allowed {card['check']['tolerance']:g})"),
        ("trained", f"{card['source']['step']} steps; checkpoint `{card['source']['checkpoint']}`"),
        ("started from", started_from(card["source"]["started_from"])),
        ("metrics", metrics_line(card["metrics"])),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    config = yaml.safe_dump(card["training_config"], sort_keys=False).rstrip()
    return (f"# Model card: {card['file']}\n\nA generator trained and exported with gantrain "
            f"{card['source']['exported_with']} (torch {card['source']['torch']}).\n\n| | |\n|---|---|\n{table}\n\n"
            f"## Loading it\n\n```python\n{card['loading_example']}\n```\n\n"
            f"## Training config\n\n```yaml\n{config}\n```\n")


def started_from(origin: dict | None) -> str:
    """Where a fine-tuned run's networks came from (trainer.init_from), in words."""
    if not origin:
        return "scratch (randomly initialised networks)"
    made = f", gantrain {origin['gantrain_version']}" if origin.get("gantrain_version") else ""
    return f"`{origin.get('run') or origin['checkpoint']}` at step {origin['step']}{made}"


def metrics_line(metrics: dict) -> str:
    values = dict(metrics.get("summary", {}).get("final_metrics") or {}) | metrics.get("metrics.json", {})
    values = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return ", ".join(f"{k} {v:.4g}" for k, v in values.items()) or "none recorded (gantrain-eval out=RUN/metrics.json)"
