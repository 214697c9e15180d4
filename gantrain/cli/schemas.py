"""The schemas of gantrain-sample's, gantrain-eval's and gantrain-export's configs (gantrain/cli/configs/*.yaml),
checked by gantrain.config.schema before the command does anything."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from gantrain.config.group_schemas import Metrics, device
from gantrain.fields import at_least, existing, one_of, positive, rule
from gantrain.generate.export import SUFFIX
from gantrain.generate.walks import MODES
from gantrain.metrics.scoring import dataset_names

DIRECTIONS = ("AtoB", "BtoA")  # a CycleGAN's G_AB and G_BA


def run_path(default: Any = None) -> Any:
    return existing(default, "path")  # a run directory or a checkpoint file


def data_source(default: Any, files: str = "") -> Any:
    """A dataset name (configs/data/<name>.yaml) or an existing folder (or, with files=".npz", such a file)."""
    def holds(v: str) -> bool:
        path = Path(v).expanduser()
        return v in dataset_names() or path.is_dir() or bool(files and path.suffix == files and path.is_file())
    what = "a dataset name, an image folder" + (f" or a {files} file" if files else "")
    return rule(default, holds, what)


@dataclass
class SampleCommand:
    run: Optional[str] = run_path()
    mode: str = one_of("samples", MODES)
    n: Optional[int] = positive(None)
    out: Optional[str] = None
    batch_size: int = positive(500)
    device: str = device("auto")
    seed: int = at_least(0, 0)
    label: Optional[int] = at_least(None, 0)
    truncation: Optional[float] = positive(None)
    steps: int = at_least(10, 2)
    points: int = at_least(4, 2)
    frames: int = positive(12)
    fps: float = positive(12)
    tensorboard: Any = rule(False, lambda v: isinstance(v, (bool, str)), "true, false or a log folder")
    input: Optional[str] = existing(None, "folder")
    direction: str = one_of("AtoB", DIRECTIONS)
    trust_checkpoint: bool = False


@dataclass
class EvalData:
    """Overrides of the real data's config."""

    root: Optional[str] = existing(None, "folder")
    image_size: Optional[int] = positive(None)
    channels: Optional[int] = one_of(None, (1, 3))
    train: Optional[bool] = None


@dataclass
class EvalCommand(Metrics):
    run: Optional[str] = run_path()
    real: Optional[str] = data_source(None)
    fake: Optional[str] = data_source(None, files=".npz")
    data: EvalData = field(default_factory=EvalData)
    out: str = "metrics.json"
    trust_checkpoint: bool = False


@dataclass
class ExportCommand:
    run: Optional[str] = run_path()
    format: str = one_of("onnx", SUFFIX)
    out: Optional[str] = None
    direction: str = one_of("AtoB", DIRECTIONS)
    truncation: Optional[float] = positive(None)
    seed: int = at_least(0, 0)
    trust_checkpoint: bool = False
