"""The `${gantrain_...:}` resolvers gantrain's configs use, registered with OmegaConf when gantrain.config is imported."""

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf

from gantrain.training.checkpoint import run_dir_of
from gantrain.training.objective import direction


def run_dir(resume, default: str) -> str:
    """hydra.run.dir: a resumed run keeps writing into its own directory."""
    run = run_dir_of(resume)
    return str(run) if run else default


def hydra_subdir(resume, stamp: str) -> str:
    """hydra.output_subdir: a resumed run keeps its original .hydra/ and records this invocation beside it."""
    return f".hydra/resume-{stamp}" if run_dir_of(resume) else ".hydra"


def sweep_dir() -> str | None:
    """logger=mlflow's store_dir: the sweep's (or search's) folder under -m, so its runs share one store and one
    experiment; None for a single run (the store goes in its own folder)."""
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return str(HydraConfig.get().sweep.dir)
    return None


def times(value, factor) -> float:
    """${gantrain_times:${..lr},2.3}: a value that follows another, scaled (the default recipe's G learning rate)."""
    numbers = []
    for x in (value, factor):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ValueError(f"gantrain_times multiplies numbers, not {x!r}")
        numbers.append(float(x))
    return numbers[0] * numbers[1]


RESOLVERS = {"gantrain_run_dir": run_dir, "gantrain_hydra_subdir": hydra_subdir,
             "gantrain_direction": lambda metric: direction(str(metric)), "gantrain_times": times,
             "gantrain_sweep_dir": sweep_dir}
for name, resolver in RESOLVERS.items():
    OmegaConf.register_new_resolver(name, resolver, replace=True)
