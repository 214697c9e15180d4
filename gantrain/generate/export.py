"""`gantrain-export`: a run's generator as an ONNX or TorchScript file with a dynamic batch dimension, checked
against PyTorch before it is kept, with a model card beside it."""

import contextlib
import inspect
import io
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from gantrain.config.build import system_from_checkpoint
from gantrain.errors import UserError, first_line
from gantrain.generate.model_card import model_card, write_card
from gantrain.generate.sampling import default_output, psi_options
from gantrain.systems import latents
from gantrain.systems.base import System
from gantrain.training.checkpoint import load_checkpoint

log = logging.getLogger(__name__)
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
ONNX_PACKAGES = ("onnx", "onnxruntime")  # torch.onnx writes through onnx; the check runs onnxruntime
TOLERANCE = 1e-4  # max abs difference from PyTorch's images, in [-1, 1] units
EXAMPLE_BATCH, CHECK_BATCH = 2, 5  # exported with one batch size, checked with another: the batch must be dynamic


def export_run(run: str, format: str, out: str | None, direction: str = "AtoB", truncation: float | None = None,
               seed: int = 0, trust: bool = False, psi: float | None = None, psi_cutoff: int | None = None) -> list[Path]:
    """Export a run's sampling network (the EMA generator when there is one; a CycleGAN's G_AB or G_BA), check
    it, keep it, and write its card. Returns [the model file, card.json, card.md]."""
    if format not in SUFFIX:
        raise UserError(f"format={format}: use onnx or torchscript")
    if format == "onnx":
        require_onnx()
    state = load_checkpoint(run)
    system = system_from_checkpoint(state, trust).eval()  # exported from the CPU
    check_request(system, direction, truncation)
    psi_given = psi_options(system, psi, psi_cutoff)
    default = f"generator_{direction}" if system.translates else "generator"
    path = output_path(Path(out).expanduser() if out else default_output(run, default + SUFFIX[format]), format)
    module = system.export_module(direction, **psi_given)
    generator = torch.Generator().manual_seed(seed)
    example = model_inputs(system, state["data_shape"], EXAMPLE_BATCH, generator, truncation)
    check = model_inputs(system, state["data_shape"], CHECK_BATCH, generator, truncation)
    difference = write_checked(module, example, check, path, format)
    log.info("%s -> %s: max abs difference %.3g from PyTorch on a batch of %d", state["path"], path, difference,
             CHECK_BATCH)
    card = model_card(state, system, path, format, check, difference, CHECK_BATCH, direction, truncation, psi_given)
    return [path, *write_card(card, path)]


def require_onnx() -> None:
    missing = []
    for name in ONNX_PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"format=onnx needs {', '.join(missing)}: pip install \"gantrain[export]\" "
                        f"(or pip install {' '.join(ONNX_PACKAGES)}); or use format=torchscript")


def check_request(system: System, direction: str, truncation: float | None) -> None:
    if system.translates:  # the direction is the system's to check (export_module)
        if truncation is not None:
            raise UserError(f"truncation={truncation}: truncation applies to noise; a translating model has "
                            f"none: drop truncation=")
    elif system.draws_samples:
        latents.check_truncation(system.z_dist, truncation)
    else:
        raise UserError(f"a {type(system).__name__} has no generator to export")


def output_path(path: Path, format: str) -> Path:
    if path.suffix.lower() != SUFFIX[format]:
        raise UserError(f"out={path}: format={format} writes a {SUFFIX[format]} file (e.g. out=generator{SUFFIX[format]})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"out={path}: cannot create its folder ({err.strerror})") from None
    return path


def model_inputs(system: System, data_shape, n: int, generator: torch.Generator,
                 truncation: float | None) -> dict[str, Tensor]:
    """The exported model's inputs, by name: source images (n, C, H, W) in [-1, 1] for a translator; else noise
    z (n, z_dim) and, for a conditional model, labels (n,) int64. (The output is always `images`.)"""
    if system.translates:
        return {"source": torch.rand(n, *data_shape, generator=generator) * 2 - 1}
    inputs = {"z": latents.draw(n, system.z_dim, system.z_dist, generator, truncation=truncation)}
    if system.conditional:
        inputs["labels"] = torch.arange(n) % system.num_classes
    return inputs


# ------------------------------------------------------------------ writing and checking
def write_checked(module: nn.Module, example: dict[str, Tensor], check: dict[str, Tensor], path: Path,
                  format: str) -> float:
    """Export `module` traced on `example` into a hidden file beside `path`, run that file on `check` (another
    batch size), and only when its images match PyTorch's within TOLERANCE rename it to `path`. Returns the
    max abs difference; on a mismatch nothing is left behind."""
    partial = path.with_name(f".{path.name}.partial{os.getpid()}")
    try:
        WRITERS[format](module, example, partial)
        with torch.no_grad():
            expected = module(*check.values())
        difference = max_difference(run_exported(partial, check, format), expected)
        if not difference <= TOLERANCE:  # NaN fails too
            raise UserError(f"export check failed: the {format} model's images differ from PyTorch's by {difference:.3g} "
                            f"(max abs difference on a batch of {len(expected)}; allowed {TOLERANCE:g}): no file written")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return difference


def max_difference(got: Tensor, expected: Tensor) -> float:
    if got.shape != expected.shape:
        return float("inf")
    return (got.float() - expected.float()).abs().max().item()


def write_onnx(module: nn.Module, inputs: dict[str, Tensor], path: Path) -> None:
    """torch.onnx's TorchScript-based exporter (dynamo=False), the batch dimension of every input and of the
    output dynamic. Chosen over the torch.export-based default of torch >= 2.9, which exports the same graphs
    to the same 1e-6 here: it takes 0.05-0.1 s instead of 1.5-2.5 s per generator, works on every torch this
    package allows (>= 2.1; dynamo= exists from 2.5), and needs no onnxscript. PyTorch deprecates it; if a
    future torch drops it, dynamo=True with dynamic_shapes={name: {0: "batch"}} and external_data=False is
    the replacement, and the check below still guards the result."""
    dynamic = {name: {0: "batch"} for name in [*inputs, "images"]}
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}  # torch >= 2.5
    try:
        with quiet():
            torch.onnx.export(module, tuple(inputs.values()), str(path), input_names=list(inputs),
                              output_names=["images"], dynamic_axes=dynamic, **legacy)
    except Exception as err:
        reason = first_line(err)
        raise UserError(f"format=onnx: torch.onnx could not export this generator ({reason[:200]}); "
                        f"try format=torchscript") from err


def write_torchscript(module: nn.Module, inputs: dict[str, Tensor], path: Path) -> None:
    """A trace (every shipped generator is a fixed graph, so tracing loses nothing; the check on another batch
    size would catch a batch size baked in)."""
    with quiet():
        traced = torch.jit.trace(module, tuple(inputs.values()), check_trace=False)
        torch.jit.save(traced, str(path))


def run_exported(path: Path, inputs: dict[str, Tensor], format: str) -> Tensor:
    """The exported file's images for inputs, run as its users will: onnxruntime, or torch.jit.load."""
    if format == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return torch.from_numpy(session.run(None, {name: value.numpy() for name, value in inputs.items()})[0])
    with quiet(), torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(*inputs.values())


WRITERS = {"onnx": write_onnx, "torchscript": write_torchscript}


@contextlib.contextmanager
def quiet():
    """The exporters' progress lines, optimizer log records and deprecation warnings (torch.jit is deprecated
    upstream, yet it is what TorchScript users load) are not the user's business: the check says whether the
    file is right."""
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.INFO))
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)
