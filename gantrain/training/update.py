"""One network's optimizer step (its loss under autocast over one batch or several micro-batches, the scaled backward,
the gradient norm, clipping, the NaN policy and the GradScaler) and the learning-rate schedule."""

import contextlib
from collections.abc import Callable

import torch
from torch import nn

from gantrain.training import distributed
from gantrain.training.safety import DivergenceWatch
from gantrain.training.settings import TrainerConfig
from gantrain.training.speed import frozen


class OptimizerStep:
    """The update of one network (G or D) by its optimizer; counts the updates the NaN policy skipped.

    With trainer.grad_accum=K the step's batch is split into K micro-batches: each one's loss, divided by K, is
    backpropagated as soon as it is computed (so only one micro-batch's activations live at a time) and the
    gradients add up to those of the whole batch's mean loss. Everything that looks at the gradients happens once per
    step, after the last micro-batch: unscaling, the norm, the NaN policy, clipping, the optimizer step and the
    GradScaler's update. `hold()` keeps DDP from all-reducing during the first K-1 micro-batches.
    """

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                 settings: TrainerConfig, device: torch.device, hold: Callable = contextlib.nullcontext):
        self.name, self.optimizer, self.params, self.settings, self.device = name, optimizer, params, settings, device
        self.amp_dtype = settings.amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.micro_batches, self.hold = settings.grad_accum, hold
        self.skipped = 0

    def __call__(self, system, loss_fn, batch, watch: DivergenceWatch, measure: bool, frozen_params=()) -> dict:
        """One step on loss_fn(batch); measures the gradient norm on logging steps (or when clipping).

        With trainer.nan_policy=skip an update whose loss or gradients are not finite is dropped (this costs one
        host-device sync per update); with `stop` the loss is only watched on the device.
        """
        fp16 = self.scaler.is_enabled()
        loss, stats = self.backward(system, loss_fn, batch, list(frozen_params), fp16)
        skip_bad = self.settings.nan_policy == "skip"
        if measure or self.settings.grad_clip or skip_bad or fp16:
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
            # under DDP every rank skips, or none does (a rank alone skipping would leave the replicas apart)
            if skip_bad and distributed.anyone(not bool(torch.isfinite(loss) & torch.isfinite(norm))):
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.update()
                self.skipped += 1
                return {}
            if self.settings.grad_clip:
                torch.nn.utils.clip_grads_with_norm_(self.params, self.settings.grad_clip, norm)
            if measure:
                stats[f"grad_norm/{self.name}"] = norm.detach()
        if not skip_bad and fp16:
            # non-finite gradients are an fp16 overflow the GradScaler handles (it skips the step and lowers its
            # scale), even when they made the loss non-finite too (a penalty's scaled input gradient); but
            # gradients still not finite at a scale below 1 are no overflow: the model diverged (or D never trains)
            verdict = torch.where(system.loss_scale < 1, torch.nan, 0.0).to(loss.dtype)
            watch.observe(torch.where(~torch.isfinite(norm), verdict, loss))
        elif not skip_bad:
            watch.observe(loss)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return stats

    def backward(self, system, loss_fn, batch, frozen_params: list[nn.Parameter], fp16: bool) -> tuple[torch.Tensor, dict]:
        """The gradients of the batch's loss, one micro-batch at a time; returns the (detached) loss of the whole
        batch and its statistics, each the mean of the micro-batches' (which are of equal size)."""
        if fp16:  # input-gradient penalties differentiate the output times this scale (penalties.py)
            system.loss_scale = self.scaler.scale(torch.ones((), device=self.device))
        k = self.micro_batches
        self.optimizer.zero_grad(set_to_none=True)
        losses, stats = [], []
        for i, part in enumerate(split(batch, k)):
            with self.hold() if i < k - 1 else contextlib.nullcontext():
                with frozen(frozen_params), torch.autocast(self.device.type, self.amp_dtype or torch.float32,
                                                           enabled=self.amp_dtype is not None):
                    loss, part_stats = loss_fn(part)
                self.scaler.scale(loss / k if k > 1 else loss).backward()
            losses.append(loss.detach())
            stats.append(part_stats)
        if k == 1:
            return losses[0], stats[0]
        return torch.stack(losses).mean(), {key: torch.stack([s[key] for s in stats if key in s]).mean()
                                             for key in dict.fromkeys(key for s in stats for key in s)}


def split(batch: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """A batch as k micro-batches of equal size (trainer.batch_size is a multiple of k), views of its tensors."""
    if k == 1:
        return [batch]
    pieces = {key: value.chunk(k) for key, value in batch.items()}
    return [{key: parts[i] for key, parts in pieces.items()} for i in range(k)]


def linear_decay(optimizers: list[torch.optim.Optimizer], step: int, settings: TrainerConfig) -> None:
    """Constant learning rates, then (with trainer.decay_start) a linear decay to zero at max_steps."""
    if settings.decay_start is None:
        return
    span = max(settings.max_steps - settings.decay_start, 1)
    factor = min(1.0, max(0.0, (settings.max_steps - step) / span))
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor
