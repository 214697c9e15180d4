"""Where a run's numbers and pictures go: TensorBoard event files, PNG grids, a GIF of progress; `Loggers` sends them
to a list of loggers (logger=tensorboard_mlflow: these files and an MLflow tracking store, training/tracking.py).

The interface every logger has: scalars(values, step), grid(tag, samples, step) -> picture, hparams(params, metrics),
finish(summary) at the end of a run, close() when it stops any other way, and last_grid."""

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams as hparams_summary
from torchvision.utils import make_grid

log = logging.getLogger(__name__)


class RunLogger:
    """TensorBoard scalars/images in the run directory, plus samples/*.png, final.png and progress.gif
    (tensorboard=false: the pictures only, for a list of loggers whose numbers go elsewhere)."""

    def __init__(self, run_dir: str | Path, purge_step: int | None = None, png: bool = True, gif: bool = True,
                 flush_secs: int = 30, max_gif_frames: int = 100, tensorboard: bool = True):
        self.run_dir = Path(run_dir)
        self.samples_dir = self.run_dir / "samples"
        self.png, self.gif, self.max_gif_frames = png, gif, max_gif_frames
        # purge_step hides events a crashed run wrote after the checkpoint we resume from
        self.writer = SummaryWriter(str(self.run_dir), purge_step=purge_step, flush_secs=flush_secs) \
            if tensorboard else None
        self.reference_points: Tensor | None = None
        self.last_grid: Tensor | None = None

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items() if self.writer else ():
            self.writer.add_scalar(tag, value, step)

    def grid(self, tag: str, samples: Tensor, step: int) -> Tensor:
        """Log images (B, C, H, W) in [-1, 1] as an 8-wide grid, or points (B, D) as a scatter plot."""
        picture = self._picture(tag, samples.detach().float().cpu())  # (3, H, W) float in [0, 1]
        if self.writer:
            self.writer.add_image(tag, picture, step)
        if self.png:
            self.samples_dir.mkdir(parents=True, exist_ok=True)
            name = "real.png" if tag == "real" else f"{tag}_{step:07d}.png"
            to_pil(picture).save(self.samples_dir / name)
        if tag != "real":
            self.last_grid = picture
        return picture

    def _picture(self, tag: str, samples: Tensor) -> Tensor:
        if samples.ndim == 2 and tag == "real":
            self.reference_points = samples
        return picture_of(samples, self.reference_points)

    def hparams(self, params: dict, metrics: dict[str, float]) -> None:
        """Record the run's swept settings beside its scalars, so TensorBoard's HPARAMS tab compares runs."""
        clean = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in params.items()}
        for summary in hparams_summary(clean, metrics) if self.writer else ():
            self.writer.file_writer.add_summary(summary)

    def finish(self, summary: dict | None = None) -> None:
        """final.png from the last grid, progress.gif from the saved grids, then close the event file."""
        if self.png and self.last_grid is not None:
            to_pil(self.last_grid).save(self.run_dir / "final.png")
        if self.gif and self.png:
            write_gif(sorted(self.samples_dir.glob("samples_*.png")), self.run_dir / "progress.gif", self.max_gif_frames)
        self.close()

    def close(self) -> None:
        if self.writer:
            self.writer.flush()
            self.writer.close()


class Loggers:
    """Several loggers as one (`logger.loggers` in the config: a list of logger nodes); the first that keeps grids
    answers last_grid."""

    def __init__(self, loggers: list, run_dir: str | Path, purge_step: int | None = None):
        self.loggers = [make(run_dir=run_dir, purge_step=purge_step) for make in loggers]

    @property
    def last_grid(self) -> Tensor | None:
        return next((logger.last_grid for logger in self.loggers if logger.last_grid is not None), None)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.scalars(values, step)

    def grid(self, tag: str, samples: Tensor, step: int) -> Tensor:
        return [logger.grid(tag, samples, step) for logger in self.loggers][0]

    def hparams(self, params: dict, metrics: dict[str, float]) -> None:
        for logger in self.loggers:
            logger.hparams(params, metrics)

    def finish(self, summary: dict | None = None) -> None:
        for logger in self.loggers:
            logger.finish(summary)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()


def picture_of(samples: Tensor, reference: Tensor | None = None) -> Tensor:
    """Images (B, C, H, W) in [-1, 1] as an 8-wide grid, or points (B, D) as a scatter plot over the real `reference`
    points: a (3, H, W) picture in [0, 1]."""
    if samples.ndim == 4:
        grid = make_grid(samples, nrow=8, padding=2, normalize=True, value_range=(-1, 1))
        return grid.expand(3, -1, -1) if grid.shape[0] == 1 else grid
    return scatter(samples, reference)


def to_pil(picture: Tensor) -> Image.Image:
    """(3, H, W) float in [0, 1] -> RGB PIL image."""
    array = (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def scatter(points: Tensor, reference: Tensor | None, size: int = 360) -> Tensor:
    """Generated points (orange) over real ones (blue) on the first two axes, as a (3, H, W) picture."""
    both = points[:, :2] if reference is None else torch.cat([reference[:, :2], points[:, :2]])
    lo, hi = both.min(0).values, both.max(0).values
    pad = (hi - lo).clamp(min=1e-6) * 0.08
    lo, hi = lo - pad, hi + pad
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, size - 1, size - 1], outline="gray")

    def dots(xy: Tensor, colour: str) -> None:
        pixels = (xy[:, :2] - lo) / (hi - lo) * (size - 1)
        for x, y in pixels.tolist():
            draw.ellipse([x - 2, size - 1 - y - 2, x + 2, size - 1 - y + 2], fill=colour)

    if reference is not None:
        dots(reference, "#1f77b4")
        draw.text((8, 6), "real", fill="#1f77b4")
    dots(points, "#ff7f0e")
    draw.text((8, 18), "generated", fill="#ff7f0e")
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


def write_gif(frames: list[Path], path: Path, max_frames: int) -> None:
    """An animated GIF of the progress grids, at most max_frames of them spread evenly (last one kept)."""
    if not frames:
        return
    if len(frames) > max_frames:
        keep = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(keep))]
    images = [Image.open(f).convert("RGB") for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=300, loop=0)


class NullLogger:
    """What ranks other than 0 log to under torchrun: nothing."""

    last_grid = None

    def scalars(self, values: dict[str, float], step: int) -> None:
        pass

    def grid(self, tag: str, samples: Tensor, step: int) -> None:
        pass

    def hparams(self, params: dict, metrics: dict[str, float]) -> None:
        pass

    def finish(self, summary: dict | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def log_evaluation(logger, values: dict[str, float], seconds: float, share: float, step: int) -> None:
    """An evaluation's metrics and cost, to the logger (metrics/*, perf/eval_*) and the log."""
    logger.scalars({f"metrics/{k}": v for k, v in values.items()} | {"perf/eval_seconds": seconds,
                                                                      "perf/eval_share": share}, step)
    log.info("step %d: %s (%.1f s, %.0f%% of the run so far)", step, "  ".join(f"{k} {v:.4g}" for k, v in values.items()),
             seconds, 100 * share)


def progress_line(system, values: dict[str, float]) -> str:
    """The system's statistics of the last logging interval, then the training speed."""
    speed = f"{values['perf/images_per_sec']:.0f} img/s" if "perf/images_per_sec" in values else ""
    return "  ".join(part for part in (system.progress(values), speed) if part)


class Meter:
    """Running sums of detached scalar tensors, kept on the device; read (one host-device sync) at the log interval."""

    def __init__(self):
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, Tensor]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.detach().float().clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def read(self) -> dict[str, float]:
        """The means since the last read."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys]).tolist()
        means = {k: v / self.counts[k] for k, v in zip(keys, values)}
        self.sums, self.counts = {}, {}
        return means
