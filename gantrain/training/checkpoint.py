"""Checkpoints: atomic writes, safe reads (weights_only=True), RNG state capture and restore, which run folder a
path belongs to, and everything of the Trainer's a checkpoint holds (saved, restored, and kept when the disk fills)."""

import contextlib
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch

from gantrain.errors import DiskFull, UserError, first_line
from gantrain.files import atomic_link, atomic_save

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
LAST = "last.pt"


def rng_state(device: torch.device | None = None) -> dict:
    """Every random stream a training step can touch, as tensors and ints (loadable with weights_only): the CPU's
    and, when training on a GPU, that GPU's (the others draw nothing for this run)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "device": device.type if device is not None else "cpu",
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    """Restore rng_state(); the saved GPU stream goes to the training device, whatever its index. A resume whose
    random streams cannot continue exactly (another kind of device) says so in one line."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    here = device.type if device is not None else "cpu"
    cuda = state.get("cuda")
    if isinstance(cuda, (list, tuple)):  # gantrain <= 0.2.0 saved every visible GPU's: take the one at this index
        cuda = cuda[device.index or 0] if here == "cuda" and len(cuda) > (device.index or 0) else None
    saved = state.get("device", "cuda" if cuda is not None else "cpu")
    if here == "cuda" and cuda is not None:
        torch.cuda.set_rng_state(cuda, device)
    if saved != here or (here == "cuda" and cuda is None):
        log.warning("resuming on %s a run whose checkpoint was written on %s: the random streams on the device "
                    "differ, so the resumed run will not repeat the uninterrupted one exactly", here, saved)


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
    atomic_save({"format_version": FORMAT_VERSION, **state}, path, lambda: previous_size(path))
    atomic_link(path, directory / LAST)
    for old in numbered_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def save_best(state: dict, directory: Path) -> Path:
    """checkpoints/best.pt: the checkpoint with the best evaluation metric so far."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "best.pt"
    atomic_save({"format_version": FORMAT_VERSION, **state}, path, lambda: previous_size(path))
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
        raise UserError(f"cannot read checkpoint {path}: {first_line(err, 200)}") from err
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


def run_dir_of(path) -> Path | None:
    """The run directory a run or checkpoint path belongs to, or None for a checkpoint outside any run."""
    if not path:
        return None
    p = Path(str(path)).expanduser()
    if p.is_dir():
        return p if (p / "checkpoints").is_dir() else None
    if p.parent.name == "checkpoints":
        return p.parent.parent
    return None


def load_system_weights(system, state: dict) -> None:
    """Each module a system checkpoints, from a loaded checkpoint; refused in one line naming the first mismatch."""
    for name, module in system.checkpoint_modules().items():
        if name not in state:
            raise UserError(f"checkpoint {state.get('path')} has no '{name}' weights: it was not written by this kind "
                            f"of model")
        load_module(module, name, state)


def load_pretrained(system, state: dict) -> list[str]:
    """trainer.init_from: the networks of system.pretrained_modules() that the checkpoint has, loaded; returns their
    names (the system fills in or refuses the others, after_init_from)."""
    loaded = [name for name in system.pretrained_modules() if name in state]
    for name in loaded:
        load_module(system.pretrained_modules()[name], name, state)
    return loaded


def load_module(module: torch.nn.Module, name: str, state: dict) -> None:
    """state[name] into a module, or a one-line refusal naming the first tensor that differs and both shapes."""
    difference = first_difference(module.state_dict(), state[name], name)
    try:
        if difference:
            raise RuntimeError(difference)
        module.load_state_dict(state[name])
    except RuntimeError as err:  # torch's first line is a header; the second names the first tensor that differs
        detail = difference or next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), first_line(err))
        was = state.get("choices", {}).get("model")
        made = f" (model={was})" if was else ""  # runs built outside the CLI record no group choices
        raise UserError(f"checkpoint {state.get('path')}{made} does not fit this {name}: {detail}") from err


def first_difference(here: dict, saved: dict, name: str) -> str | None:
    """The first tensor, in the module's own order, that the saved state dict lacks or holds in another shape (then
    any it has that the module lacks), in words; None when every name and shape agrees."""
    for key, value in here.items():
        if key not in saved:
            return f"{key} ({shape_of(value)} here) is not in the checkpoint"
        if torch.is_tensor(value) and torch.is_tensor(saved[key]) and value.shape != saved[key].shape:
            return f"{key} is {shape_of(saved[key])} in the checkpoint but {shape_of(value)} here"
    extra = next((key for key in saved if key not in here), None)
    return f"the checkpoint's {extra} ({shape_of(saved[extra])}) has no place in this {name}" if extra else None


def shape_of(value) -> str:
    return ("x".join(map(str, value.shape)) or "a scalar") if torch.is_tensor(value) else type(value).__name__


def trainer_state(trainer) -> dict:
    """Everything a training step depends on, for a checkpoint: weights, optimizers, scalers, random streams, the
    data position, the objective, the clock, the fixed grid inputs and the run's meta (config, choices, version)."""
    with trainer.unwrapped():
        modules = {name: module.state_dict() for name, module in trainer.system.checkpoint_modules().items()}
    return {
        **modules,
        "step": trainer.step,
        "optimizers": {"generator": trainer.opt_g.state_dict(), "discriminator": trainer.opt_d.state_dict()},
        "scalers": {"generator": trainer.scaler_g.state_dict(), "discriminator": trainer.scaler_d.state_dict()},
        "rng": rng_state(trainer.device),
        "batches": trainer.batches.state_dict(),
        "data_shape": list(trainer.data.shape),
        "num_classes": trainer.data.num_classes,
        **trainer.objective.state_dict(),
        **trainer.clock.state_dict(),
        "fixed": {k: v.cpu() for k, v in trainer.fixed.items()},
        **trainer.meta,
    }


def restore_trainer(trainer, path) -> dict:
    """trainer_state() read back into the Trainer; returns the checkpoint read (its "step" is where to continue)."""
    state = load_checkpoint(path)
    saved_shape = tuple(state.get("data_shape", trainer.data.shape))
    if saved_shape != tuple(trainer.data.shape):
        raise UserError(f"checkpoint {state['path']} was trained on samples of shape {'x'.join(map(str, saved_shape))}, "
                        f"this data gives {'x'.join(map(str, trainer.data.shape))}: resume with the same data and "
                        f"image size")
    with trainer.unwrapped():
        load_system_weights(trainer.system, state)
    trainer.opt_g.load_state_dict(state["optimizers"]["generator"])
    trainer.opt_d.load_state_dict(state["optimizers"]["discriminator"])
    trainer.scaler_g.load_state_dict(state["scalers"]["generator"])
    trainer.scaler_d.load_state_dict(state["scalers"]["discriminator"])
    trainer.batches.load_state_dict(state["batches"])
    trainer.fixed = state["fixed"]
    trainer.objective.load_state_dict(state)
    trainer.clock.load_state_dict(state)
    if state.get("init_from"):  # where the run started (trainer.init_from), for its summary and later checkpoints
        trainer.meta["init_from"] = state["init_from"]
    set_rng_state(state["rng"], trainer.device)
    log.info("resumed from %s at step %d", state["path"], state["step"])
    return state


@contextlib.contextmanager
def stop_when_disk_full(run_dir: Path, last_saved: Path | None, logger):
    """A checkpoint that does not fit on the disk stops the run in one line naming what to resume from, with the
    logger's files flushed first."""
    try:
        yield
    except DiskFull as err:
        with contextlib.suppress(OSError):  # the event file may not fit either; the message matters more
            logger.close()
        kept = (f"the last good checkpoint is {last_saved}; free some space (or lower trainer.keep_checkpoints) and "
                f"resume with: gantrain trainer.resume={run_dir}" if last_saved else
                "no checkpoint was written yet; free some space and start again")
        raise DiskFull(f"{err}; {kept}") from err
