"""Where gantrain keeps what it computes once: $GANTRAIN_CACHE, $XDG_CACHE_HOME/gantrain, or ~/.cache/gantrain."""

import os
from pathlib import Path

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
