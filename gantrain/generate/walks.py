"""gantrain-sample's pictures of a latent space: interpolation grids, looping latent walks (GIF or MP4) and
class grids, all drawn by the network sampling uses (the EMA generator when there is one)."""

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from gantrain.errors import UserError
from gantrain.generate.pictures import check_movie_file, grid, log_to_tensorboard, write_movie
from gantrain.generate.sampling import check_label, default_output, load_sampler, psi_options, tensorboard_dir
from gantrain.systems import latents
from gantrain.systems.base import System

log = logging.getLogger(__name__)
MODES = ("samples", "interpolate", "walk", "classes")  # samples: gantrain.generate.sampling's .npz and grid
DEFAULT_N = {"samples": 64, "interpolate": 8, "walk": 16, "classes": 10}
DEFAULT_OUT = {"interpolate": "interpolate.png", "walk": "walk.gif", "classes": "classes.png"}


@dataclass(frozen=True)
class Picture:
    """What to draw: `n` rows (interpolate), tiles per frame (walk) or columns (classes)."""

    mode: str
    n: int
    seed: int = 0
    label: int | None = None
    truncation: float | None = None
    steps: int = 10     # interpolate: images per row, both ends included
    points: int = 4     # walk: latent points visited in turn, the last leading back to the first
    frames: int = 12    # walk: frames from one point to the next
    fps: float = 12.0   # walk: frames per second
    batch_size: int = 500
    psi: float | None = None       # truncation in W toward the average w (a mapping network's; 1: none)
    psi_cutoff: int | None = None  # ... of the first psi_cutoff ws only (None: all)

    def check(self) -> None:
        for key in ("n", "steps", "points", "frames", "fps", "batch_size"):
            if not getattr(self, key) > 0:
                raise UserError(f"{key}={getattr(self, key)}: must be positive")
        if self.mode == "interpolate" and self.steps < 2:
            raise UserError(f"steps={self.steps}: an interpolation needs at least 2 images per row (its two ends)")
        if self.mode == "walk" and self.points < 2:
            raise UserError(f"points={self.points}: a walk needs at least 2 latent points")


def draw_picture(run: str, picture: Picture, out: str | None, tensorboard: bool | str | None = None,
                 device: str = "auto", trust: bool = False) -> Path:
    """The picture of `picture.mode` from a run's generator, written to out (a .png; a .gif or .mp4 for a walk)
    and, when asked, to TensorBoard at the checkpoint's step."""
    picture.check()
    path = Path(out).expanduser() if out else default_output(run, DEFAULT_OUT[picture.mode])
    if picture.mode == "walk":
        check_movie_file(path)
    elif path.suffix.lower() != ".png":
        raise UserError(f"out={out}: mode={picture.mode} writes a .png picture")
    log_dir = tensorboard_dir(run, tensorboard)
    state, system = load_sampler(run, device, trust)
    if len(state["data_shape"]) != 3:
        raise UserError(f"mode={picture.mode} pictures images; this model draws points: use mode=samples")
    latents.check_truncation(system.z_dist, picture.truncation)
    psi_options(system, picture.psi, picture.psi_cutoff)
    check_label(system, picture.label)
    frames = {"interpolate": interpolation_grid, "walk": walk_frames, "classes": class_grid}[picture.mode](system, picture)
    if picture.mode == "walk":
        write_movie(frames, path, picture.fps)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        frames[0].save(path)
    if log_dir is not None:
        log_to_tensorboard(log_dir, f"gantrain-sample/{picture.mode}", state["step"], frames, picture.fps)
    log.info("%s of %s (step %d) -> %s", picture.mode, state["path"], state["step"], path)
    return path


def noise(system: System, n: int, picture: Picture, generator: torch.Generator) -> torch.Tensor:
    """n latents (n, z_dim) as the system draws them, truncated when asked, on the CPU."""
    return latents.draw(n, system.z_dim, system.z_dist, generator, truncation=picture.truncation)


def decode(system: System, z: torch.Tensor, labels: torch.Tensor | None, picture: Picture) -> torch.Tensor:
    """The images of latents z (and labels), truncated in W when the picture asks for psi."""
    return system.decode(z, labels, picture.batch_size, **psi_options(system, picture.psi, picture.psi_cutoff))


def interpolation_grid(system: System, picture: Picture) -> list[Image.Image]:
    """Rows of `steps` images between two random latents (slerp for normal, linear for uniform ones). A
    conditional model without label=: one latent pair, a row per class; with label=K, n rows of class K."""
    generator = torch.Generator().manual_seed(picture.seed)
    every_class = system.conditional and picture.label is None
    ends = noise(system, 2 if every_class else 2 * picture.n, picture, generator)
    rows = torch.cat([latents.interpolate(ends[i], ends[i + 1], picture.steps, system.z_dist)
                      for i in range(0, len(ends), 2)])  # (rows * steps, z_dim)
    if every_class:
        labels = torch.arange(system.num_classes).repeat_interleave(picture.steps)
        rows = rows.repeat(system.num_classes, 1)
    else:
        labels = torch.full((len(rows),), picture.label) if system.conditional else None
    return [grid(decode(system, rows, labels, picture), nrow=picture.steps)]


def walk_frames(system: System, picture: Picture) -> list[Image.Image]:
    """points * frames frames of a loop through random latents: each frame a grid of n tiles, each tile its own
    walk (of class label=K when given); a conditional model without label=: a row of every class, one walk."""
    generator = torch.Generator().manual_seed(picture.seed)
    every_class = system.conditional and picture.label is None
    walks = 1 if every_class else picture.n
    points = noise(system, walks * picture.points, picture, generator).view(walks, picture.points, -1)
    paths = torch.stack([latents.loop_through(p, picture.frames, system.z_dist) for p in points], dim=1)  # (F, walks, D)
    if every_class:
        tiles, labels = system.num_classes, torch.arange(system.num_classes).repeat(len(paths))
        paths = paths.repeat_interleave(tiles, dim=1)
    else:
        tiles = walks
        labels = torch.full((len(paths) * tiles,), picture.label) if system.conditional else None
    images = decode(system, paths.reshape(-1, paths.shape[-1]), labels, picture)
    images = images.view(len(paths), tiles, *images.shape[1:])
    nrow = tiles if every_class else math.ceil(math.sqrt(tiles))
    return [grid(frame, nrow) for frame in images]


def class_grid(system: System, picture: Picture) -> list[Image.Image]:
    """A row per class and n columns; each column one latent, the same in every row (style held, class varied)."""
    if not system.conditional:
        raise UserError("mode=classes draws a row per class; this model is not conditional: use mode=samples "
                        "(or mode=interpolate)")
    if picture.label is not None:
        raise UserError(f"label={picture.label}: mode=classes shows every class; drop label= (or use mode=samples "
                        f"label={picture.label})")
    z = noise(system, picture.n, picture, torch.Generator().manual_seed(picture.seed))
    labels = torch.arange(system.num_classes).repeat_interleave(picture.n)
    return [grid(decode(system, z.repeat(system.num_classes, 1), labels, picture), nrow=picture.n)]
