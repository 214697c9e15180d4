"""Files written whole or not at all: a temporary file, flushed to disk, then renamed over the target.

Used for checkpoints, decoded-data caches and metric caches. A write that fails leaves no partial file
behind, and running out of disk space is reported as DiskFull in one line.
"""

import contextlib
import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from gantrain.errors import DiskFull

OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


def atomic_save(obj: dict, path: Path, at_least: Callable[[], int] = lambda: 0) -> None:
    """torch.save(obj) to path so that a reader never sees half a file. `at_least`: bytes the file needs
    besides its tensors' (e.g. the size of the file it replaces), for the message on a full disk."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with _removed_on_failure(tmp, path, lambda: max(tensor_bytes(obj), at_least())):
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def atomic_link(src: Path, dst: Path) -> None:
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
