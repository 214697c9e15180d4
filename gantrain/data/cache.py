"""A folder of images decoded once: later runs load one uint8 tensor file instead of every image.

The cache sits beside the data (`<root>/.gantrain-cache/`) or, when that folder is read-only, under
`$XDG_CACHE_HOME/gantrain` (default ~/.cache/gantrain). Its name holds a fingerprint of every
file's path, size and modification time, so adding, removing or editing an image rebuilds it.
"""

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch

from gantrain.checkpoint import atomic_save

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def fingerprint(root: Path, paths: list[Path]) -> str:
    digest = hashlib.sha1()
    for p in paths:
        st = p.stat()
        digest.update(f"{p.resolve().relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cache_dir(root: Path) -> Path:
    beside = root / ".gantrain-cache"
    try:
        beside.mkdir(exist_ok=True)
        probe = beside / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return beside
    except OSError:  # read-only data (a shared mount): cache in the user's folder instead
        home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gantrain"
        home.mkdir(parents=True, exist_ok=True)
        return home


def cached_decode(root: Path, paths: list[Path], settings: str, decode: Callable[[], dict]) -> dict:
    """decode() -> {"images": uint8 (N, C, H, W), "labels": int64 (N,), ...}, from the cache when it is current."""
    root = root.resolve()
    kind = hashlib.sha1(f"{root}\0{settings}\0v{CACHE_VERSION}".encode()).hexdigest()[:12]
    folder = cache_dir(root)
    path = folder / f"{kind}-{fingerprint(root, paths)}.pt"
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring the damaged cache %s (%s)", path, str(err).splitlines()[0][:120])
    decoded = decode()
    for stale in folder.glob(f"{kind}-*.pt"):  # the same folder and settings, older contents
        stale.unlink(missing_ok=True)
    atomic_save(decoded, path)
    log.info("cached the decoded images in %s", path)
    return decoded
