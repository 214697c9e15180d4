"""`torchrun -m gantrain ...`: one process per device; every rank writes into rank 0's run directory."""

import contextlib
import sys
from datetime import datetime

from gantrain.cli.exits import fail
from gantrain.training import distributed
from gantrain.training.checkpoint import run_dir_of


@contextlib.contextmanager
def session():
    """Under torchrun: the process group joined and this rank's overrides added to sys.argv; left at the end
    (cleanly when the command finished, at once otherwise). Outside torchrun: nothing."""
    if distributed.launched_by_torchrun():
        distributed.init_from_env()
        sys.argv += torchrun_overrides(sys.argv[1:])
    finished = False
    try:
        yield
        finished = True
    finally:
        distributed.shutdown(finished)


def torchrun_overrides(argv: list[str]) -> list[str]:
    """All ranks write into rank 0's run directory; only rank 0 writes Hydra's files and logs at INFO."""
    searching = any(a in ("hydra/sweeper=search", "hydra/sweeper=gan_search") for a in argv)
    if ("-m" in argv or "--multirun" in argv) and not searching:  # a search's rank 0 hands every rank its trial
        fail("torchrun runs one training job: drop -m (sweep with Hydra's launchers instead)")
    extra = []
    stamp = distributed.broadcast_from_main(datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.resume=")), None)
    if not any(a.startswith("hydra.run.dir=") for a in argv) and not run_dir_of(resume):
        extra.append(f"hydra.run.dir=outputs/{stamp}")
    if not distributed.is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.job_logging.root.level=WARNING"]
    return extra
