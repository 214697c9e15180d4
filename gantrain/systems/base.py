"""The System contract: everything the Trainer, sampling, evaluation and translation ask of a GAN family.

A system owns its networks and the maths between them (losses, penalties, EMA, augmentation); the
Trainer owns devices, optimizers, AMP, DDP, the step counter and the run directory. A new family is one
subclass of System and one YAML file under configs/model/ (docs/architecture.md walks through one).

Shapes: images are float tensors (B, C, H, W) in [-1, 1], points (B, D); labels are int64 (B,).
A batch is a dict of such tensors keyed by `batch_keys` (plus "label" when the data has classes).

The order of calls in one training step, which a system may rely on:
    system.step = step                 (before the step's first d_loss)
    n_critic x (d_loss(batch); D's optimizer step; after_d_step())
    g_loss(batch)                      (the same batch as the last d_loss, D's weights frozen)
    G's optimizer step; after_g_step(step + 1)
so g_loss may reuse work of the d_loss just before it (GAN reuses G(z) with its graph). With trainer.grad_accum=K
(only for a system that `accumulates_gradients`) each d_loss(batch) and g_loss(batch) above is K calls, one per
micro-batch of the batch, in the same order in the D step and in the G step; then g_loss must not backpropagate
through a graph d_loss made (under DDP the D steps' generator forwards prepare no all-reduce: each micro-batch of
the G step runs its own, and only the last one's backward all-reduces).
"""

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from gantrain.errors import UserError

Batch = dict[str, Tensor]
Stats = dict[str, Tensor]  # detached scalar tensors, read by the Trainer only at the logging interval


class System(nn.Module):
    """Base class of GAN families. Abstract members raise NotImplementedError; hooks do nothing."""

    # Which constructor argument is built from which node of cfg.model: build_system instantiates
    # cfg.model[node] once per argument (CycleGAN builds its two generators from one `generator` node).
    networks: dict[str, str] = {}
    # The keys a training batch must hold; the data's `batch_keys` must match (images of one domain: ("real",)).
    batch_keys: tuple[str, ...] = ("real",)
    # Capabilities, declared rather than probed:
    draws_samples: bool = False  # sample(n) draws new data from noise (gantrain-sample n=..., the evaluator)
    translates: bool = False  # translate(images, direction) maps one image domain to the other
    # d_loss and g_loss may run on micro-batches (trainer.grad_accum): each loss is the mean over a batch's samples,
    # so the micro-batches' gradients, each divided by their number, add up to the whole batch's
    accumulates_gradients: bool = False
    # The noise of a system that draws samples: its size and law, normal N(0, 1) or uniform U[-1, 1]
    # (gantrain.systems.latents draws, truncates and interpolates codes for gantrain-sample's walks and exports).
    z_dim: int = 0
    z_dist: str = "normal"

    def __init__(self, num_classes: int = 0):
        super().__init__()
        self.num_classes = num_classes  # > 0: conditional; sample() and the evaluator pass class labels
        self.step = 0  # the Trainer's step count, set before each step (lazy penalties, EMA warm-up)
        # under trainer.amp=fp16, the GradScaler's loss scale (a device tensor), set by the Trainer before each
        # loss: a penalty on input gradients differentiates the output times it (penalties.per_sample_grad)
        self.loss_scale: Tensor | None = None

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # ---------------------------------------------------------------- training (abstract)
    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """The discriminators' loss (a scalar to minimise) and statistics such as "loss/D", "D(x)"."""
        raise NotImplementedError

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """The generators' loss and statistics (at least "loss/G"), after the step's last d_loss."""
        raise NotImplementedError

    def d_parameters(self) -> Iterator[nn.Parameter]:
        """What D's optimizer updates."""
        raise NotImplementedError

    def g_parameters(self) -> Iterator[nn.Parameter]:
        """What G's optimizer updates."""
        raise NotImplementedError

    def trained_networks(self) -> list[nn.Module]:
        """The networks the optimizers train, each a direct child of the system or an entry of a child
        ModuleDict: the Trainer wraps exactly these in DDP and checks they agree across processes."""
        raise NotImplementedError

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """Modules saved under these top-level checkpoint keys (weights, EMA, image pools, ...)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- starting from another run (trainer.init_from)
    def pretrained_modules(self) -> dict[str, nn.Module]:
        """The checkpoint_modules() a new run takes from another run's checkpoint: the networks (and EMA copies),
        not the state of training (augmentation probabilities, image pools)."""
        raise UserError(f"{type(self).__name__} cannot start from another run's networks (no pretrained_modules())")

    def after_init_from(self, loaded: list[str]) -> None:
        """After trainer.init_from loaded those of pretrained_modules() the checkpoint has (`loaded`): fill in the
        others, or refuse. By default every one is needed."""
        missing = [name for name in self.pretrained_modules() if name not in loaded]
        if missing:
            raise UserError(f"the checkpoint has no '{missing[0]}' weights: it was written by another kind of model")

    # ---------------------------------------------------------------- hooks (no-ops by default)
    def after_d_step(self) -> None:
        """After each D optimizer step (WGAN's weight clipping)."""

    def after_g_step(self, step: int) -> None:
        """After each G optimizer step, with the new step count (EMA update)."""

    # ---------------------------------------------------------------- grids and the progress line
    def fixed_inputs(self, n: int, seed: int, data) -> dict[str, Tensor]:
        """The inputs of the fixed grid, drawn once per run (on the CPU) and kept in the checkpoint.
        `data` is the training Data (its `fixed_batch` gives real examples)."""
        raise NotImplementedError

    def preview(self, fixed: dict[str, Tensor]) -> Tensor:
        """The grid's images (N, C, H, W) (or points (N, D)) for fixed_inputs, as float, without autograd."""
        raise NotImplementedError

    def progress(self, values: dict[str, float]) -> str:
        """The log's progress line from the interval's mean statistics (the Trainer appends images/s)."""
        return "  ".join(f"{name} {values[key]:.4f}" for key, name in (("loss/D", "loss_D"), ("loss/G", "loss_G"))
                         if key in values)

    # ---------------------------------------------------------------- capabilities
    def sample(self, n: int, batch_size: int = 500, generator: torch.Generator | None = None,
               labels: Tensor | None = None, truncation: float | None = None) -> Tensor:
        """n new samples on the CPU (float, model range), drawn with `generator`; a conditional system takes
        `labels` (n,), by default the classes in turn; `truncation` t truncates normal noise to [-t, t]
        (gantrain.systems.latents.truncate). Only when `draws_samples`."""
        raise UserError(f"{type(self).__name__} does not draw samples from noise")

    def decode(self, z: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
        """Samples for given noise z (B, z_dim) (and labels (B,) when conditional), on the CPU (float, model
        range), from the network sample() uses (the EMA copy when there is one). Only when `draws_samples`."""
        raise UserError(f"{type(self).__name__} does not draw samples from given noise (no decode()): use mode=samples")

    def export_module(self, direction: str = "AtoB") -> nn.Module:
        """A stand-alone copy, in eval mode, of the network that sample() (or translate(images, direction))
        runs: forward(z) or forward(z, labels) -> samples, or forward(images) -> images. What gantrain-export
        writes; it must give what sample()/decode() or translate() give."""
        raise UserError(f"{type(self).__name__} has no generator to export (no export_module())")

    def translate(self, images: Tensor, direction: str = "AtoB") -> Tensor:
        """images (B, C, H, W) of one domain mapped to the other (AtoB or BtoA). Only when `translates`."""
        raise UserError(f"{type(self).__name__} does not translate images between domains")
