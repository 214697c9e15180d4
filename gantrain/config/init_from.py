"""trainer.init_from: a new run's networks (G, D, the EMA copy) taken from another run's checkpoint, which is read and
checked as a resume reads and checks one; the rest of the run (optimizers, step, data position, ADA's p, evaluations)
starts fresh under the new run's own config."""

import logging
from pathlib import Path

from omegaconf import DictConfig

from gantrain.config.migration import migrate_config
from gantrain.config.trust import check_saved_config, targets_in
from gantrain.errors import UserError
from gantrain.moved import new_target
from gantrain.systems.base import System
from gantrain.training.checkpoint import load_checkpoint, load_pretrained, run_dir_of

log = logging.getLogger(__name__)


def start_from(cfg: DictConfig, system: System, data_shape: tuple[int, ...]) -> dict:
    """Load cfg.trainer.init_from's networks into `system` (still on the CPU, before the Trainer places it); returns
    where the run started, for summary.json, its checkpoints and the model card."""
    path = cfg.trainer.init_from
    state = load_checkpoint(path)  # a run directory's last.pt (or an older one when it is damaged), or a .pt file
    source = f"trainer.init_from={path}: checkpoint {state['path']}"
    if "config" not in state:
        raise UserError(f"{source} has no saved config: it was not written by gantrain's Trainer")
    # its config is not built, but a checkpoint that names code gantrain does not ship is refused as resume refuses it
    check_saved_config(migrate_config(state["config"]), source, bool(cfg.get("trust_checkpoint", False)),
                       also_allowed=[new_target(target) for _, target in targets_in(cfg)])
    try:
        loaded = load_pretrained(system, state)
        system.after_init_from(loaded)
    except UserError as err:
        saved = tuple(state.get("data_shape", data_shape))
        hint = (f" (it was trained on samples of {'x'.join(map(str, saved))}, this data gives "
                f"{'x'.join(map(str, data_shape))})" if saved != tuple(data_shape) else "")
        raise UserError(f"trainer.init_from={path}: {err}{hint}") from None
    run = run_dir_of(state["path"])
    origin = {"run": str(run.resolve()) if run else None, "checkpoint": str(Path(state["path"]).resolve()),
              "step": int(state.get("step", 0)), "gantrain_version": state.get("gantrain_version"),
              "model": state.get("choices", {}).get("model"), "data": state.get("choices", {}).get("data"),
              "networks": loaded}
    log.info("starting from %s (step %d): %s", origin["checkpoint"], origin["step"], ", ".join(loaded))
    return origin
