"""Exit statuses: a known failure becomes one line on stderr and a status instead of a traceback
(HYDRA_FULL_ERROR=1 shows the trace); in a sweep, a failing job is recorded and the others go on."""

import functools
import os
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from gantrain.cli.sweeps import mark_failed
from gantrain.errors import DiskFull, Interrupted, TrainingDiverged, UserError

EXIT_STATUS = {UserError: 2, TrainingDiverged: 1, DiskFull: 1}


def prog_name() -> str:
    name = Path(sys.argv[0]).name
    return "gantrain" if name == "__main__.py" else name  # python -m gantrain / torchrun -m gantrain


def is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def fail(message: str, status: int = 2) -> None:
    """End the command with one line naming the problem and the fix."""
    print(f"{prog_name()}: error: {message}", file=sys.stderr)
    sys.exit(status)


def reports_user_errors(task):
    """A Hydra task whose known failures end the command in one line with their exit status; Ctrl-C / SIGTERM
    exit with 128 + the signal. In a sweep, a failing job writes FAILED in its directory and returns None."""

    @functools.wraps(task)
    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except Interrupted as err:
            print(f"{prog_name()}: {err}", file=sys.stderr)
            sys.exit(128 + err.signum)
        except Exception as err:
            known = type(err) in EXIT_STATUS or isinstance(err, UserError)
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (known or is_multirun()):
                raise
            if is_multirun():
                mark_failed(err, known)
                return None
            fail(str(err), EXIT_STATUS.get(type(err), 2))

    return wrapper
