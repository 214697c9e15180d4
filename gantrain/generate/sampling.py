"""Draw samples from a trained run: an .npz of uint8 images (N, C, H, W) and a PNG grid (gantrain-sample's
default mode; gantrain.generate.walks makes its other pictures)."""

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import save_image

from gantrain.config.build import system_from_checkpoint
from gantrain.data.pixels import to_uint8
from gantrain.device import resolve_device
from gantrain.errors import UserError
from gantrain.generate.pictures import log_to_tensorboard
from gantrain.systems.base import System
from gantrain.systems.latents import check_truncation
from gantrain.training.checkpoint import find_checkpoint, load_checkpoint, run_dir_of
from gantrain.training.loggers import scatter, to_pil

log = logging.getLogger(__name__)
MAX_GRID = 1024  # a PNG of more images than this is too big to look at


def run_folder(run: str) -> Path | None:
    """The run directory a `run=` value belongs to (the folder holding checkpoints/), None for a loose .pt file."""
    return run_dir_of(find_checkpoint(run))


def default_output(run: str, name: str) -> Path:
    """`name` in the run directory, or beside a checkpoint that is in none."""
    return (run_folder(run) or find_checkpoint(run).parent) / name


def tensorboard_dir(run: str, tensorboard: bool | str | None) -> Path | None:
    """Where `tensorboard=` logs a picture: true: the run's own event files; a folder: there; false: nowhere."""
    if tensorboard is None or tensorboard is False:
        return None
    if tensorboard is True:
        folder = run_folder(run)
        if folder is None:
            raise UserError(f"tensorboard=true logs into the run directory; run={run} is a checkpoint outside one: "
                            f"give a log folder, tensorboard=path/to/logs")
        return folder
    return Path(str(tensorboard)).expanduser()


def load_sampler(run: str, device: str, trust: bool = False) -> tuple[dict, System]:
    """A run's checkpoint and its system, on `device` in eval mode; refused unless it draws samples from noise."""
    state = load_checkpoint(run)
    system = system_from_checkpoint(state, trust).to(resolve_device(device)).eval()
    if system.translates:
        raise UserError(f"{state['path']} holds a model that translates images rather than drawing them from noise: "
                        f"gantrain-sample run={run} input=<folder of images> out=<folder> direction=AtoB")
    if not system.draws_samples:
        raise UserError(f"{state['path']} holds a {type(system).__name__}, which does not draw samples from noise")
    return state, system


def output_paths(run: str, out: str | None) -> tuple[Path, Path]:
    """(npz, png) paths: `out` may name either one; the default is samples.npz beside the checkpoints."""
    if out is None:
        out = str(default_output(run, "samples.npz"))
    path = Path(out).expanduser()
    if path.suffix.lower() not in (".npz", ".png"):
        raise UserError(f"out={out}: name an .npz (samples) or .png (grid) file")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_suffix(".npz"), path.with_suffix(".png")


def sample_to_files(run: str, n: int, out: str | None, batch_size: int, device: str, seed: int,
                    label: int | None = None, trust: bool = False, truncation: float | None = None,
                    tensorboard: bool | str | None = None, psi: float | None = None,
                    psi_cutoff: int | None = None) -> list[Path]:
    if n <= 0 or batch_size <= 0:
        raise UserError(f"n={n}, batch_size={batch_size}: both must be positive")
    npz_path, png_path = output_paths(run, out)
    log_dir = tensorboard_dir(run, tensorboard)
    state, system = load_sampler(run, device, trust)
    check_truncation(system.z_dist, truncation)
    labels = class_labels(system, n, label)
    # only what is asked for is passed: a family of one's own may predate the truncation argument
    options = {"labels": labels, "truncation": truncation}
    samples = system.sample(n, batch_size, torch.Generator().manual_seed(seed), **psi_options(system, psi, psi_cutoff),
                            **{key: value for key, value in options.items() if value is not None})
    if samples.ndim == 4:
        arrays = {"images": to_uint8(samples).numpy()} | ({"labels": labels.numpy()} if labels is not None else {})
        np.savez_compressed(npz_path, **arrays)
        save_image(samples[:MAX_GRID], png_path, nrow=int(np.ceil(np.sqrt(min(n, MAX_GRID)))), normalize=True, value_range=(-1, 1))
    else:  # points: keep the floats, plot them over nothing
        np.savez_compressed(npz_path, points=samples.numpy())

        to_pil(scatter(samples, None)).save(png_path)
    if log_dir is not None:
        log_to_tensorboard(log_dir, "gantrain-sample/samples", state["step"], [Image.open(png_path).convert("RGB")])
    log.info("%d samples from %s (step %d) -> %s, %s", n, state["path"], state["step"], npz_path, png_path)
    return [npz_path, png_path]


def psi_options(system: System, psi: float | None, psi_cutoff: int | None) -> dict:
    """psi= and psi_cutoff= as keywords of sample(), decode() and export_module() ({} when neither is given), for a
    system with a mapping network (System.maps_latents); refused in one line for the others."""
    if psi is None and psi_cutoff is None:
        return {}
    if not system.maps_latents:
        raise UserError(f"psi={psi}: truncation in W needs a mapping network (model=stylegan2); this "
                        f"{type(system).__name__} has none: drop psi= (truncation= truncates its noise z)")
    if psi is None:
        raise UserError(f"psi_cutoff={psi_cutoff} says how many ws psi truncates: give psi= too (e.g. psi=0.7)")
    return {"psi": float(psi), "psi_cutoff": psi_cutoff}


def class_labels(system, n: int, label: int | None) -> torch.Tensor | None:
    """The classes to draw for a conditional model: all of one (`label=3`) or each in turn."""
    check_label(system, label)
    if not system.num_classes:
        return None
    if label is None:
        return torch.arange(n) % system.num_classes
    return torch.full((n,), int(label), dtype=torch.long)


def check_label(system, label: int | None) -> None:
    """label= is a class of a conditional model."""
    classes = system.num_classes
    if not classes and label is not None:
        raise UserError(f"label={label}: this model is not conditional; drop label=")
    if classes and label is not None and not 0 <= int(label) < classes:
        raise UserError(f"label={label}: this model knows classes 0..{classes - 1}")
