"""A folder of images decoded once: later runs load one uint8 tensor file instead of every image.

The cache lives in the user's cache folder (`gantrain.caches`, under `decoded/`), never in the data folder.
Its name holds the resolved data path and the decode settings (so two folders never collide), then a
fingerprint of every file's path, size and modification time, so adding, removing or editing an image
rebuilds it.
"""

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from gantrain.caches import cache_dir
from gantrain.errors import first_line
from gantrain.files import atomic_save

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # 2: "skipped" counts per reason instead of one "unreadable" count


def fingerprint(root: Path, paths: list[Path]) -> str:
    """Paths as found under root (a linked folder may point outside it), with their targets' size and time."""
    digest = hashlib.sha1()
    for p in paths:
        st = p.stat()
        digest.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def cached_decode(root: Path, paths: list[Path], settings: str, decode: Callable[[], dict]) -> dict:
    """decode() -> {"images": uint8 (N, C, H, W), "labels": int64 (N,), ...}, from the cache when it is current.

    `paths` are the files as found under `root` (not resolved).
    """
    kind = hashlib.sha1(f"{root.resolve()}\0{settings}\0v{CACHE_VERSION}".encode()).hexdigest()[:12]
    folder = cache_dir("decoded")
    path = folder / f"{kind}-{fingerprint(root, paths)}.pt"
    if path.is_file():
        try:
            decoded = torch.load(path, map_location="cpu", weights_only=True)
            log.info("loaded the decoded images from %s", path)
            return decoded
        except Exception as err:  # a damaged cache is rebuilt, never trusted
            log.warning("ignoring the damaged cache %s (%s)", path, first_line(err, 120))
    decoded = decode()
    for stale in folder.glob(f"{kind}-*.pt"):  # the same folder and settings, older contents
        stale.unlink(missing_ok=True)
    atomic_save(decoded, path)
    log.info("decoded %s images once; cached in %s (%.1f MB)", f"{len(decoded['images']):,}", path,
             path.stat().st_size / 1e6)
    return decoded
