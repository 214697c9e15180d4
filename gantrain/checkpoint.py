"""Checkpoint files: atomic writes, safe reads (weights_only=True), RNG state capture and restore."""

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from gantrain.errors import UserError

FORMAT_VERSION = 1
LAST = "last.pt"


def rng_state() -> dict:
    """Every random stream a training step can touch, as tensors and ints (loadable with weights_only)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: dict, path: Path) -> None:
    """Write to a temporary file, flush it to disk, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_link(src: Path, dst: Path) -> None:
    """Point dst at src's bytes (hard link, or a copy where links are not allowed), atomically."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def save_checkpoint(state: dict, directory: Path, step: int, keep: int) -> Path:
    """Write step_XXXXXXX.pt and last.pt; keep only the newest `keep` numbered files."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step_{step:07d}.pt"
    _atomic_save({"format_version": FORMAT_VERSION, **state}, path)
    _atomic_link(path, directory / LAST)
    for old in numbered_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def save_best(state: dict, directory: Path) -> Path:
    """checkpoints/best.pt: the checkpoint with the best evaluation metric so far."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "best.pt"
    _atomic_save({"format_version": FORMAT_VERSION, **state}, path)
    return path


def numbered_checkpoints(directory: Path) -> list[Path]:
    """step_*.pt files, oldest first."""
    return sorted(directory.glob("step_*.pt"))


def find_checkpoint(path: str | os.PathLike) -> Path:
    """A .pt file as given, or the newest checkpoint of a run directory (its checkpoints/last.pt)."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for candidate in (p / "checkpoints" / LAST, p / LAST):
            if candidate.is_file():
                return candidate
        numbered = numbered_checkpoints(p / "checkpoints") or numbered_checkpoints(p)
        if numbered:
            return numbered[-1]
        raise UserError(f"no checkpoint in {p} (looked for checkpoints/{LAST}): point at a run directory or a .pt file")
    raise UserError(f"{p} does not exist: point at a run directory (outputs/DATE/TIME) or a checkpoint .pt file")


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without executing any code from it (weights_only=True)."""
    path = find_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refused, truncated or not a torch file at all
        raise UserError(f"cannot read checkpoint {path}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(state, dict) or "format_version" not in state:
        raise UserError(f"{path} is not a gantrain checkpoint (no format_version key)")
    if state["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path} has format {state['format_version']}, newer than this gantrain ({FORMAT_VERSION}): upgrade gantrain")
    state["path"] = str(path)
    return state
