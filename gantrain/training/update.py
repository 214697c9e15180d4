"""One network's optimizer step (its loss under autocast, the scaled backward, the gradient norm, clipping, the NaN
policy and the GradScaler), the optimizers' set-up (lazy regularisation's correction) and the learning-rate schedule."""

from collections.abc import Callable

import torch
from torch import nn

from gantrain.training import distributed
from gantrain.training.safety import DivergenceWatch
from gantrain.training.settings import TrainerConfig
from gantrain.training.speed import frozen, make_optimizer, use_fused


class OptimizerStep:
    """The update of one network (G or D) by its optimizer; counts the updates the NaN policy skipped."""

    def __init__(self, name: str, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                 settings: TrainerConfig, device: torch.device):
        self.name, self.optimizer, self.params, self.settings, self.device = name, optimizer, params, settings, device
        self.amp_dtype = settings.amp_dtype
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.skipped = 0

    def __call__(self, system, loss_fn, batch, watch: DivergenceWatch, measure: bool, frozen_params=()) -> dict:
        """One step on loss_fn(batch); measures the gradient norm on logging steps (or when clipping).

        With trainer.nan_policy=skip an update whose loss or gradients are not finite is dropped (this costs one
        host-device sync per update); with `stop` the loss is only watched on the device.
        """
        fp16 = self.scaler.is_enabled()
        if fp16:  # input-gradient penalties differentiate the output times this scale (penalties.py)
            system.loss_scale = self.scaler.scale(torch.ones((), device=self.device))
        with frozen(list(frozen_params)), torch.autocast(self.device.type, self.amp_dtype or torch.float32,
                                                         enabled=self.amp_dtype is not None):
            result = loss_fn(batch)
        if result is None:  # a lazy regularisation with nothing to do this time (System.reg_loss)
            return {}
        loss, stats = result
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        skip_bad = self.settings.nan_policy == "skip"
        if measure or self.settings.grad_clip or skip_bad or fp16:
            self.scaler.unscale_(self.optimizer)
            grads = [p.grad for p in self.params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
            # under DDP every rank skips, or none does (a rank alone skipping would leave the replicas apart)
            if skip_bad and distributed.anyone(not bool(torch.isfinite(loss.detach()) & torch.isfinite(norm))):
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
            watch.observe(torch.where(~torch.isfinite(norm), verdict, loss.detach()))
        elif not skip_bad:
            watch.observe(loss)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return stats


def optimizer_steps(system, settings: TrainerConfig, make_opt_g: Callable, make_opt_d: Callable,
                    device: torch.device) -> tuple[OptimizerStep, OptimizerStep]:
    """G's and D's updates, each with its optimizer over the system's parameters, corrected for the system's lazy
    regularisation steps."""
    fused, steps, lazy = use_fused(settings.fused, device), [], system.lazy_intervals()
    for name, factory, params in (("G", make_opt_g, system.g_parameters()), ("D", make_opt_d, system.d_parameters())):
        params = list(params)
        optimizer = make_optimizer(factory, params, fused)
        if name in lazy:
            lazy_correction(optimizer, lazy[name])
        steps.append(OptimizerStep(name, optimizer, params, settings, device))
    return steps[0], steps[1]


def lazy_correction(optimizer: torch.optim.Optimizer, interval: int) -> None:
    """An optimizer that also takes a regularisation step every `interval` steps: lr and betas to the power
    r = interval / (interval + 1) (lr times r), so that its main and lazy steps together move as one step per
    iteration would (StyleGAN2-ADA's training_loop.py: mb_ratio). A checkpoint keeps the corrected values."""
    ratio = interval / (interval + 1)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * ratio
        if "betas" in group:
            group["betas"] = tuple(beta ** ratio for beta in group["betas"])


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
