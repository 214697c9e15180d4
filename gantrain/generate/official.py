"""gantrain-import's steps: official NVlabs/stylegan2-ada-pytorch state dicts -> a gantrain run folder.

The files are what `torch.save(G_ema.state_dict(), "G_ema.pt")` (and G's, D's) writes from a network pickle loaded
with the official code (docs/guide/stylegan2.md shows the three lines). gantrain.models.stylegan2_convert renames
their keys and infers the networks' configuration; this module checks the files, composes nothing (the command
gives it the training config), and writes a run folder: checkpoints/last.pt with the config, the data shape, the
number of classes and the weights (G_ema as the EMA generator), and config.yaml. gantrain-sample, -eval and -export
read it like a trained run's; it holds no optimizer state, so it cannot be resumed.
"""

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from gantrain import __version__
from gantrain.config.build import build_system
from gantrain.errors import UserError, first_line
from gantrain.models.stylegan2_convert import convert_discriminator, convert_generator
from gantrain.training.checkpoint import save_checkpoint

log = logging.getLogger(__name__)
# what the weights cannot tell, as gantrain-import's options: the official train.py's values (--cfg cifar: group 32)
GENERATOR_KEYS = ("w_dim", "mapping_layers", "architecture", "channel_base", "channel_max", "num_fp16_res", "conv_clamp")
DISCRIMINATOR_KEYS = ("architecture", "channel_base", "channel_max", "mbstd_group_size", "mbstd_num_channels",
                      "num_fp16_res", "conv_clamp", "cmap_dim", "mapping_layers")


@dataclass
class Imported:
    """Converted weights (gantrain's key names) and the constructor arguments they imply."""

    generator: dict            # G's state dict (G_ema's when no G was given)
    ema: dict                  # G_ema's state dict
    discriminator: dict | None  # None: no D given, the run's D is freshly initialised
    g_kwargs: dict
    d_kwargs: dict | None
    sources: dict = field(default_factory=dict)  # role -> {"file": ..., "sha256": ...}


def read_state_dict(path: str, role: str) -> dict[str, torch.Tensor]:
    """An official network's state dict from a torch.save file, read without running code from it."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"{role}={path}: no such file (write it with torch.save({role}.state_dict(), ...): see "
                        f"docs/guide/stylegan2.md)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # a network pickle (.pkl) needs the official code to unpickle: refused here
        raise UserError(f"{role}={path} is not a state dict saved with torch.save ({first_line(err, 120)}); from an "
                        f"official network pickle, save {role}.state_dict() as docs/guide/stylegan2.md shows") from None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{role}={path} holds no state dict (a dict of tensors): save {role}.state_dict()")
    return state


def convert(G_ema: dict, G: dict | None, D: dict | None, mbstd_group_size: int | None, num_fp16_res: int,
            conv_clamp: float | None) -> Imported:
    """The official state dicts converted, their configurations inferred and checked against each other."""
    ema, g_kwargs = convert_generator(G_ema, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp)
    generator = ema
    if G is not None:
        generator, kwargs = convert_generator(G, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp)
        if kwargs != g_kwargs:
            raise UserError(f"G and G_ema are different networks ({differences(kwargs, g_kwargs)}): pass the two of "
                            f"one network pickle")
    discriminator, d_kwargs = None, None
    if D is not None:
        discriminator, d_kwargs = convert_discriminator(D, mbstd_group_size, num_fp16_res, conv_clamp)
        seen = {key: d_kwargs[key] for key in ("shape", "num_classes")}
        if seen != {key: g_kwargs[key] for key in ("shape", "num_classes")}:
            raise UserError(f"D judges images {seen} but G_ema makes {g_kwargs['shape']} with "
                            f"{g_kwargs['num_classes']} classes: pass the D of the same network pickle")
    return Imported(generator, ema, discriminator, g_kwargs, d_kwargs)


def differences(a: dict, b: dict) -> str:
    return ", ".join(f"{key} {a[key]} vs {b[key]}" for key in a if a[key] != b.get(key))


def config_overrides(imported: Imported, mbstd_group_size: int | None, data: str | None,
                     experiment: str | None) -> list[str]:
    """The command line whose training config describes the imported networks: model=stylegan2 with their sizes
    (or `experiment`'s recipe with them), loss=bce, and `data` (a dataset name or an image folder) at their size."""
    g, d = imported.g_kwargs, imported.d_kwargs
    if d is None:  # a fresh D as wide as G, its architecture the model's (or the preset's)
        d = {key: g[key] for key in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp")}
        d["mbstd_group_size"] = mbstd_group_size
    channels, size = g["shape"][0], g["shape"][-1]
    lines = [f"experiment={experiment}"] if experiment else ["model=stylegan2", "loss=bce"]
    lines += [f"model.z_dim={g['z_dim']}", f"model.conditional={str(g['num_classes'] > 0).lower()}"]
    lines += [f"model.generator.{key}={value_text(g[key])}" for key in GENERATOR_KEYS]
    lines += [f"model.discriminator.{key}={value_text(d[key])}" for key in DISCRIMINATOR_KEYS if key in d]
    if data is None or Path(data).expanduser().is_dir():
        lines += ["data=folder", f"data.channels={channels}"]
        lines += [f"data.root={Path(data).expanduser().absolute()}"] if data is not None else []
    else:
        lines += [f"data={data}"]
    return lines + [f"data.image_size={size}"]


def value_text(value) -> str:
    return "null" if value is None else str(value)


def write_run(cfg: DictConfig, imported: Imported, out: str, choices: dict) -> list[Path]:
    """checkpoints/last.pt (and step_0000000.pt) and config.yaml in `out`, a new or empty folder."""
    run_dir = Path(out).expanduser()
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"out={out} exists and is not an empty folder: name a new run folder")
    g = imported.g_kwargs
    torch.manual_seed(cfg.seed)  # the discriminator, when none is imported, starts from this seed's weights
    system = build_system(cfg, tuple(g["shape"]), g["num_classes"])
    modules = system.checkpoint_modules()  # generator, discriminator, ema (an EMA holding `network`), ...
    modules["generator"].load_state_dict(imported.generator if "ema" in modules else imported.ema)
    if "ema" in modules:
        modules["ema"].load_state_dict({f"network.{key}": value for key, value in imported.ema.items()})
    if imported.discriminator is not None:
        modules["discriminator"].load_state_dict(imported.discriminator)
    else:
        log.warning("no D given: the run's discriminator is freshly initialised (fine-tuning trains it from scratch)")
    run_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)
    state = {name: module.state_dict() for name, module in modules.items()} | {
        "step": 0, "data_shape": list(g["shape"]), "num_classes": g["num_classes"], "imported": imported.sources,
        "config": OmegaConf.to_container(cfg, resolve=True), "choices": choices, "gantrain_version": __version__}
    path = save_checkpoint(state, run_dir / "checkpoints", 0, keep=1)
    log.info("imported %s -> %s", ", ".join(imported.sources), path)
    return [run_dir / "checkpoints" / "last.pt", run_dir / "config.yaml"]


def source(path: str) -> dict:
    """Where a network came from: its file and sha256."""
    file = Path(path).expanduser()
    return {"file": str(file.absolute()), "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
