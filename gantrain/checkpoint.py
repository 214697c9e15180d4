"""Checkpoint files: atomic writes, safe reads (weights_only=True), RNG state capture and restore."""

import contextlib
import errno
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

from gantrain.errors import DiskFull, UserError

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
LAST = "last.pt"
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


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


def atomic_save(obj: dict, path: Path) -> None:
    """Write to a temporary file, flush it to disk, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with _removed_on_failure(tmp, path, lambda: max(tensor_bytes(obj), previous_size(path))):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _atomic_link(src: Path, dst: Path) -> None:
    """Point dst at src's bytes (hard link, or a copy where links are not allowed), atomically."""
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    with _removed_on_failure(tmp, dst, lambda: src.stat().st_size):
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


@contextlib.contextmanager
def _removed_on_failure(tmp: Path, path: Path, needed):
    """A failed write leaves no partial temp file (on a full disk it would keep the disk full), and running
    out of space becomes DiskFull, in one line: torch.save reports it as "unexpected pos N vs M"."""
    try:
        yield
    except Exception as err:
        tmp.unlink(missing_ok=True)
        size, free = needed(), _free_bytes(path.parent)  # free: measured without the partial file
        if _out_of_space(err) or (free is not None and free < size):
            raise DiskFull(f"no space left on the disk to write {path}: it needs about {size / 1e6:.1f} MB, "
                           f"{(free or 0) / 1e6:.1f} MB are free") from err
        raise


def _out_of_space(err: BaseException) -> bool:
    """ENOSPC or EDQUOT anywhere in the exception's chain (torch wraps the OSError of the write)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno in OUT_OF_SPACE:
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def tensor_bytes(obj) -> int:
    """The bytes of every tensor in a (nested) checkpoint dict: about the size of its file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def previous_size(path: Path) -> int:
    """The size of the checkpoint this write replaces (or of last.pt beside it): what the new one will need."""
    return next((p.stat().st_size for p in (path, path.with_name(LAST)) if p.is_file()), 0)


def save_checkpoint(state: dict, directory: Path, step: int, keep: int) -> Path:
    """Write step_XXXXXXX.pt and last.pt; keep only the newest `keep` numbered files."""
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob(".*.tmp*"):  # half-written files of a process that was killed
        if not stale.name.endswith(f"tmp{os.getpid()}"):
            stale.unlink(missing_ok=True)
    path = directory / f"step_{step:07d}.pt"
    atomic_save({"format_version": FORMAT_VERSION, **state}, path)
    _atomic_link(path, directory / LAST)
    for old in numbered_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def save_best(state: dict, directory: Path) -> Path:
    """checkpoints/best.pt: the checkpoint with the best evaluation metric so far."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "best.pt"
    atomic_save({"format_version": FORMAT_VERSION, **state}, path)
    return path


def numbered_checkpoints(directory: Path) -> list[Path]:
    """step_*.pt files, oldest first."""
    return sorted(directory.glob("step_*.pt"))


def candidates(path: str | os.PathLike) -> list[Path]:
    """Checkpoints to try, best first: the one named (a run directory names its last.pt), then the
    older numbered ones beside it, newest first, to fall back on when a file is damaged."""
    p = Path(path).expanduser()
    if p.is_dir():
        folder = p / "checkpoints" if (p / "checkpoints").is_dir() else p
        found = ([folder / LAST] if (folder / LAST).is_file() else []) + numbered_checkpoints(folder)[::-1]
        if not found:
            raise UserError(f"no checkpoint in {p} (looked for checkpoints/{LAST}): point at a run directory or a .pt file")
        return found
    if p.is_file():
        older = [c for c in numbered_checkpoints(p.parent)[::-1] if c != p and (p.name == LAST or c.name < p.name)]
        return [p, *older]
    raise UserError(f"{p} does not exist: point at a run directory (outputs/DATE/TIME) or a checkpoint .pt file")


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a path names: a .pt file as given, or a run directory's newest checkpoint."""
    return candidates(path)[0]


def read_checkpoint(path: Path) -> dict:
    """One checkpoint file, read without executing any code from it (weights_only=True)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle refused, truncated or not a torch file at all
        raise UserError(f"cannot read checkpoint {path}: {str(err).strip().splitlines()[0][:200]}") from err
    if not isinstance(state, dict) or "format_version" not in state:
        raise UserError(f"{path} is not a gantrain checkpoint (no format_version key)")
    if state["format_version"] > FORMAT_VERSION:
        raise UserError(f"{path} has format {state['format_version']}, newer than this gantrain ({FORMAT_VERSION}): upgrade gantrain")
    state["path"] = str(path)
    return state


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The newest readable checkpoint at `path`; a damaged file is reported in one line and skipped."""
    errors, files = [], candidates(path)
    for i, candidate in enumerate(files):
        try:
            state = read_checkpoint(candidate)
        except UserError as err:
            errors.append(str(err))
            if i + 1 < len(files):
                log.warning("%s; trying %s", err, files[i + 1].name)
            continue
        if errors:
            log.warning("resuming from %s instead", candidate)
        return state
    raise UserError(errors[0] if len(errors) == 1 else f"no readable checkpoint at {path} ({len(errors)} tried): {errors[0]}")
