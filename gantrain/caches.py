"""Where gantrain keeps what it computes once: $GANTRAIN_CACHE, $XDG_CACHE_HOME/gantrain, or ~/.cache/gantrain."""

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

from gantrain.errors import UserError


def cache_dir(kind: str) -> Path:
    """The folder for one kind of cache ("decoded" images, "metrics" classifiers and statistics), created on first use.

    Never a user's data folder: a stray folder there breaks other tools (torchvision's ImageFolder takes it for a
    class) and read-only or shared data could not hold it anyway. The order follows torch hub and HF datasets.
    """
    xdg = os.environ.get("XDG_CACHE_HOME")  # the XDG spec: an empty value means unset
    root = os.environ.get("GANTRAIN_CACHE") or (Path(xdg) / "gantrain" if xdg else Path.home() / ".cache" / "gantrain")
    folder = Path(root).expanduser() / kind
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the cache folder {folder} ({err.strerror}): set GANTRAIN_CACHE to a "
                        f"writable folder") from err
    return folder


@contextlib.contextmanager
def computing(path: Path):
    """Held while this process computes the cache file `path`: another process that needs the same file waits, then
    reads it instead of computing it again (search workers on one machine start together and need the same
    classifier). Callers look for the file again once inside. The lock is a hidden file beside it, left in place
    (removing it could let a third process lock a file the second still waits on). Without fcntl (Windows) nothing
    is held."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(path.parent / f".{path.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_or_compute(path: Path, read: Callable[[], T | None], compute: Callable[[], T]) -> T:
    """What `read()` finds in the cache file `path`, or else `compute()` (which writes it), computed by one process:
    the others wait for it under `computing(path)` and read what it wrote."""
    found = read()
    if found is not None:
        return found
    with computing(path):
        found = read()
        return found if found is not None else compute()
