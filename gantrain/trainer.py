"""The training loop: D and G updates, logging cadence, sampling, checkpoints and exact resume.

The Trainer knows nothing about GAN variants: it relies only on the System contract (systems/base.py),
asks the system for a D loss and a G loss, steps the two optimizers, and owns devices, AMP, DDP, the step
counter and everything written to the run directory. Its settings are the typed cfg.trainer
(trainer_config.TrainerConfig).
"""

import contextlib
import inspect
import logging
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gantrain import distributed
from gantrain.checkpoint import load_checkpoint, rng_state, save_best, save_checkpoint, set_rng_state
from gantrain.data import Data
from gantrain.device import resolve_device
from gantrain.errors import DiskFull, Interrupted, TrainingDiverged, UserError
from gantrain.loggers import NullLogger, RunLogger
from gantrain.objective import EarlyStopping, better
from gantrain.summary import write_summary
from gantrain.safety import DivergenceWatch, stop_on_signals
from gantrain.systems.base import System
from gantrain.trainer_config import TrainerConfig

log = logging.getLogger(__name__)


class Meter:
    """Running sums of detached scalar tensors, kept on the device; read (one sync) at the log interval."""

    def __init__(self):
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, Tensor]) -> None:
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value.detach().float().clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def read(self) -> dict[str, float]:
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = torch.stack([self.sums[k] for k in keys]).tolist()
        means = {k: v / self.counts[k] for k, v in zip(keys, values)}
        self.sums, self.counts = {}, {}
        return means


@contextlib.contextmanager
def frozen(params: list[nn.Parameter]):
    """Parameters that need no gradient for this forward pass (D's weights during the G step)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def make_optimizer(factory: Callable, params: list[nn.Parameter], fused: bool) -> torch.optim.Optimizer:
    """factory(params), with the fused single-kernel update where asked for and the optimizer has one."""
    func = getattr(factory, "func", factory)
    if fused and "fused" in inspect.signature(func).parameters:
        return factory(params, fused=True)
    return factory(params)


CONVOLUTIONS = (nn.Conv2d, nn.ConvTranspose2d)


def memory_format(channels_last, device: torch.device, networks: list[nn.Module]) -> torch.memory_format:
    """trainer.channels_last: `auto` is NHWC for networks with 2-D convolutions on the CPU and CUDA, where oneDNN
    and cuDNN run them faster in that layout (scripts/bench_channels_last.py measures it); plain otherwise."""
    if str(channels_last).lower() == "auto":
        convolutional = any(isinstance(m, CONVOLUTIONS) for network in networks for m in network.modules())
        channels_last = convolutional and device.type in ("cpu", "cuda")
    elif isinstance(channels_last, str):
        channels_last = channels_last.lower() == "true"
    return torch.channels_last if channels_last else torch.contiguous_format


class Trainer:
    """Alternates `n_critic` D updates with one G update for `max_steps` steps (a step = one G update)."""

    def __init__(
        self, system: System, data: Data, settings: TrainerConfig, make_opt_g: Callable, make_opt_d: Callable,
        make_logger: Callable, run_dir: str | Path, meta: dict | None = None, hparams: dict | None = None,
        seed: int = 0, evaluator: Callable | None = None,
    ):
        self.system, self.data, self.settings, self.run_dir = system, data, settings, Path(run_dir)
        self.meta, self.hparams, self.seed, self.evaluator = meta or {}, hparams or {}, seed, evaluator
        self.best: dict = {}  # {"metric", "value", "step"} of checkpoints/best.pt
        self.evaluations: list[dict] = []  # {"step": N, "seconds": training s, metric: value, ...}, kept on resume
        self.early = EarlyStopping(settings.best_metric, settings.patience, settings.must_reach, settings.must_reach_by)
        self.stop_reason: str | None = None  # why an early-stopping rule ended the run
        self.last_values: dict[str, float] = {}  # the last logging interval's means, for the progress line
        self.seconds_before, self.images_total = 0.0, 0  # wall time of earlier sessions of this run; images trained
        self.train_seconds_before = 0.0  # the part of it spent training (evaluations excluded)
        self.began, self.eval_seconds = time.perf_counter(), 0.0  # set again when training begins
        self.skipped = 0
        self.saved_step, self.saved_path = -1, None
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.device = distributed.device_for_rank(resolve_device(settings.device))
        self.amp_dtype = settings.amp_dtype
        self.memory_format = memory_format(settings.channels_last, self.device, system.trained_networks())
        self.system.to(self.device, memory_format=self.memory_format)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = settings.cudnn_benchmark  # the fastest conv kernels for fixed shapes
        if settings.compile:
            for network in system.trained_networks():
                network.compile()  # in place: state_dict keys (and so checkpoints) stay as they are
        self.replicas = None
        if self.world > 1:  # DDP: same start everywhere (rank 0's weights), a different noise stream per rank
            self.replicas = distributed.Replicas(system, system.trained_networks(), self.device, settings.sync_bn)
            torch.manual_seed(seed + 1_000_003 * self.rank)
        self.g_params, self.d_params = list(system.g_parameters()), list(system.d_parameters())
        fused = settings.fused
        use_fused = self.device.type == "cuda" if str(fused).lower() == "auto" else bool(fused)
        self.opt_g, self.opt_d = make_optimizer(make_opt_g, self.g_params, use_fused), make_optimizer(make_opt_d, self.d_params, use_fused)
        fp16 = self.amp_dtype == torch.float16
        self.scaler_g = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_d = torch.amp.GradScaler(self.device.type, enabled=fp16)
        shard = {"rank": self.rank, "world": self.world} if self.world > 1 else {}
        self.batches = data.batches(settings.batch_size, seed, self.device, **shard)
        self.fixed = system.fixed_inputs(settings.grid_size, seed, data)
        self.step = 0
        self.meter = Meter()
        self.make_logger = make_logger
        self.logger: RunLogger | None = None

    # ---------------------------------------------------------------- the loop
    def fit(self) -> float | None:
        """Train to max_steps: update D (n_critic times), update G, then log, sample, evaluate, checkpoint.
        Returns the run's objective: the best value of trainer.best_metric (None without evaluations)."""
        self.begin()
        bar = tqdm(total=self.settings.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=None if self.settings.progress else True)  # None: a bar on terminals, none in log files
        stopping = 0  # 1: an early-stopping rule (decided on rank 0), 2: a signal; agreed by all ranks
        try:
            with logging_redirect_tqdm(), stop_on_signals() as stop:
                while self.step < self.settings.max_steps:
                    stopping = distributed.largest(2 if stop.signum is not None else 1 if self.stop_reason else 0)
                    if stopping:
                        break
                    self.train_step()
                    bar.update(1)
                    self.periodic(bar)
                    self.check_time_budget()
        except BaseException as err:
            if self.main and not isinstance(err, Interrupted):
                write_summary(self.run_dir, self.summary("diverged" if isinstance(err, TrainingDiverged) else "failed",
                                                         str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__))
            self.logger.close()  # TensorBoard keeps what was logged, whatever went wrong
            raise
        finally:
            bar.close()
        if stopping == 2:  # a stop request, here or on another rank
            self.interrupt(stop.signum or signal.SIGTERM)
        if self.stop_reason:
            log.info("stopping early at step %d: %s", self.step, self.stop_reason)
        self.finish()
        return self.best.get("value")

    def begin(self) -> None:
        """Resume (or start), open the logger, show the real data once."""
        start = self.load(self.settings.resume) if self.settings.resume else 0
        self.watch = DivergenceWatch(self.device, start)
        if self.main:  # rank 0 writes the run directory; the other ranks only train
            self.logger = self.make_logger(run_dir=self.run_dir, purge_step=start + 1 if self.settings.resume else None)  # steps <= start stay
        else:
            self.logger = NullLogger()
        if start == 0:
            self.logger.grid("real", self.data.preview(self.settings.grid_size, self.seed), 0)
            # the metrics are declared too, so TensorBoard's HPARAMS tab sorts a sweep by FID
            reported = self.evaluator.reported() if self.evaluator is not None else []
            self.logger.hparams(self.hparams, {"loss/D": 0.0, "loss/G": 0.0} | {f"metrics/{m}": 0.0 for m in reported})
        if start >= self.settings.max_steps:
            log.info("the checkpoint is at step %d, trainer.max_steps=%d: nothing to train", start, self.settings.max_steps)
        self.clock, self.images = time.perf_counter(), 0
        self.began, self.eval_seconds = self.clock, 0.0  # evaluation's share of the wall time is logged

    def train_step(self) -> None:
        """n_critic D updates, then one G update through the just-updated D (whose weights stay frozen)."""
        self.set_learning_rates()
        self.system.step = self.step  # lazy penalties and EMA start follow the step count
        measure = (self.step + 1) % self.settings.log_every == 0
        for i in range(self.settings.n_critic):
            batch = self.to_memory_format(next(self.batches))
            # under DDP, G's gradients are all-reduced only for the fake the G step will backpropagate through
            with self.no_sync(self.g_params) if i < self.settings.n_critic - 1 else contextlib.nullcontext():
                self.meter.add(self.update(self.opt_d, self.scaler_d, self.system.d_loss, batch, self.d_params, "D", measure))
            self.system.after_d_step()
        with self.no_sync(self.d_params):  # D's weights are frozen in the G step: nothing of D's to all-reduce
            self.meter.add(self.update(self.opt_g, self.scaler_g, self.system.g_loss, batch, self.g_params, "G", measure,
                                       frozen_params=self.d_params))
        self.step += 1
        self.watch.advance()
        self.system.after_g_step(self.step)
        self.images += self.settings.batch_size * self.settings.n_critic * self.world  # all ranks together
        self.images_total += self.settings.batch_size * self.settings.n_critic * self.world

    @property
    def main(self) -> bool:
        return self.rank == 0

    def no_sync(self, params: list[nn.Parameter]):
        return self.replicas.no_sync(params) if self.replicas else contextlib.nullcontext()

    def unwrapped(self):
        """The networks without their DDP wrappers: what rank 0 samples, evaluates and saves."""
        return self.replicas.unwrapped() if self.replicas else contextlib.nullcontext()

    def to_memory_format(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.memory_format is torch.contiguous_format:
            return batch
        return {k: v.contiguous(memory_format=self.memory_format) if v.ndim == 4 else v for k, v in batch.items()}

    def check_time_budget(self) -> None:
        """trainer.max_seconds: end the run (with its last grid, evaluation and checkpoint) once training took that long."""
        limit = self.settings.max_seconds
        if limit is not None and not self.stop_reason and self.training_seconds() >= limit:
            self.stop_reason = f"trainer.max_seconds={limit:g} reached"

    def periodic(self, bar) -> None:
        if self.step % self.settings.log_every == 0:
            self.log_scalars(bar)
        if self.step % self.settings.sample_every == 0:
            self.sample()
        if self.settings.eval_every and self.step % self.settings.eval_every == 0:
            self.evaluate()
        if self.step % self.settings.checkpoint_every == 0:
            self.save()

    def update(self, opt, scaler, loss_fn, batch, params, name: str, measure: bool, frozen_params=()) -> dict[str, Tensor]:
        """One optimizer step on loss_fn(batch); measures the gradient norm on logging steps (or when clipping).

        With trainer.nan_policy=skip an update whose loss or gradients are not finite is dropped (this
        costs one host-device sync per update); with `stop` the loss is only watched on the device.
        """
        fp16 = scaler.is_enabled()
        if fp16:  # input-gradient penalties differentiate the output times this scale (penalties.py)
            self.system.loss_scale = scaler.scale(torch.ones((), device=self.device))
        with frozen(list(frozen_params)), torch.autocast(self.device.type, self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            loss, stats = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        skip_bad = self.settings.nan_policy == "skip"
        if measure or self.settings.grad_clip or skip_bad or fp16:
            scaler.unscale_(opt)
            grads = [p.grad for p in params if p.grad is not None]
            norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
            # under DDP every rank skips, or none does (a rank alone skipping would leave the replicas apart)
            if skip_bad and distributed.anyone(not bool(torch.isfinite(loss.detach()) & torch.isfinite(norm))):
                opt.zero_grad(set_to_none=True)
                scaler.update()
                self.skipped += 1
                return {}
            if self.settings.grad_clip:
                torch.nn.utils.clip_grads_with_norm_(params, self.settings.grad_clip, norm)
            if measure:
                stats[f"grad_norm/{name}"] = norm.detach()
        if not skip_bad and fp16:
            # non-finite gradients are an fp16 overflow the GradScaler handles (it skips the step and lowers its
            # scale), even when they made the loss non-finite too (a penalty's scaled input gradient); but
            # gradients still not finite at a scale below 1 are no overflow: the model diverged (or D never
            # trains), which the watch reports as a non-finite loss
            grads_bad = ~torch.isfinite(norm)
            verdict = torch.where(self.system.loss_scale < 1, torch.nan, 0.0).to(loss.dtype)
            self.watch.observe(torch.where(grads_bad, verdict, loss.detach()))
        elif not skip_bad:
            self.watch.observe(loss)
        scaler.step(opt)
        scaler.update()
        return stats

    def set_learning_rates(self) -> None:
        """Constant learning rates, then (with trainer.decay_start) a linear decay to zero at max_steps."""
        if self.settings.decay_start is None:
            return
        span = max(self.settings.max_steps - self.settings.decay_start, 1)
        factor = min(1.0, max(0.0, (self.settings.max_steps - self.step) / span))
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
                group["lr"] = group["initial_lr"] * factor

    def evaluate(self) -> None:
        """Metrics of the current generator (EMA when present), logged; checkpoints/best.pt follows the best."""
        if not self.main:
            return
        started = time.perf_counter()
        trained_for = self.training_seconds()  # the time-to-quality curve's x: training only, evaluations excluded
        with self.unwrapped():
            values = self.evaluator(self.system, self.step)
        seconds = time.perf_counter() - started
        self.clock += seconds  # images/s measures training, not evaluation
        self.eval_seconds += seconds
        share = self.eval_seconds / max(time.perf_counter() - self.began, 1e-9)
        self.logger.scalars({f"metrics/{k}": v for k, v in values.items()}
                            | {"perf/eval_seconds": seconds, "perf/eval_share": share}, self.step)
        log.info("step %d: %s (%.1f s, %.0f%% of the run so far)", self.step,
                 "  ".join(f"{k} {v:.4g}" for k, v in values.items()), seconds, 100 * share)
        self.evaluations.append({"step": self.step, "seconds": round(trained_for, 2), **{k: float(v) for k, v in values.items()}})
        value = values.get(self.settings.best_metric)
        if value is None:
            return
        improved = better(self.settings.best_metric, float(value), self.best.get("value"))
        if improved:
            self.best = {"metric": self.settings.best_metric, "value": float(value), "step": self.step}
            with self.stop_when_disk_full():
                save_best(self.state_dict(), self.run_dir / "checkpoints")
        reason = self.early.reason(self.step, float(value), self.best.get("value"), improved)
        self.stop_reason = self.stop_reason or reason  # the final evaluation of a stopping run keeps why it stopped

    # ---------------------------------------------------------------- logging and sampling
    def log_scalars(self, bar) -> None:
        values = self.meter.read()  # the one host-device sync of the interval
        self.check_finite()
        now = time.perf_counter()
        values["perf/images_per_sec"] = self.images / max(now - self.clock, 1e-9)
        if self.settings.nan_policy == "skip":
            values["perf/skipped_updates"] = self.skipped
        values["lr/G"], values["lr/D"] = self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]
        self.logger.scalars(values, self.step)
        bar.set_postfix(loss_D=f"{values.get('loss/D', math.nan):.3f}", loss_G=f"{values.get('loss/G', math.nan):.3f}",
                        img_s=f"{values['perf/images_per_sec']:.0f}", refresh=False)
        self.last_values = values
        self.clock, self.images = now, 0

    def progress_line(self) -> str:
        """The system's statistics of the last logging interval, then the training speed."""
        values = self.last_values
        speed = f"{values['perf/images_per_sec']:.0f} img/s" if "perf/images_per_sec" in values else ""
        return "  ".join(part for part in (self.system.progress(values), speed) if part)

    def sample(self) -> None:
        self.check_finite()  # a diverged generator's grid would only show noise
        if not self.main:
            return
        with self.unwrapped():
            self.logger.grid("samples", self.system.preview(self.fixed), self.step)
        log.info("step %d/%d  %s", self.step, self.settings.max_steps, self.progress_line())

    def finish(self) -> None:
        """Last grid and checkpoint (unless this step already has them), final.png and progress.gif."""
        # rank 0's logger knows whether this step has its grid; all ranks follow it (sample() agrees on NaNs)
        if distributed.broadcast_from_main(self.logger.last_grid is None or bool(self.step % self.settings.sample_every)):
            self.sample()
        if self.settings.eval_every and self.step % self.settings.eval_every:
            self.evaluate()
        if self.saved_step != self.step:
            self.save()
        self.logger.finish()
        if self.main:
            write_summary(self.run_dir, self.summary("stopped_early" if self.stop_reason else "finished", self.stop_reason))
        if self.world > 1:
            with self.unwrapped():
                agree = distributed.weights_agree(self.system.trained_networks())
            log.info("weights %s on %d ranks", "identical" if agree else "DIFFER", self.world)
        log.info("done: %d steps; samples in %s, checkpoint %s", self.step, self.run_dir / "final.png",
                 self.run_dir / "checkpoints" / "last.pt")

    def interrupt(self, signum: int) -> None:
        """After SIGINT/SIGTERM: checkpoint this step, flush TensorBoard, and say how to resume."""
        if self.saved_step != self.step:
            self.save()
        self.logger.close()
        name = signal.Signals(signum).name
        if self.main:
            write_summary(self.run_dir, self.summary("interrupted", f"stopped by {name}"))
        raise Interrupted(f"stopped by {name} at step {self.step}/{self.settings.max_steps}; checkpoint written. "
                          f"Resume with: gantrain trainer.resume={self.run_dir}", signum)

    def check_finite(self) -> None:
        """Stop the run (keeping the last good checkpoint) once a loss has been NaN or infinite."""
        if self.settings.nan_policy == "skip":
            return
        bad = distributed.earliest(self.watch.first_bad_step())  # every rank stops at the same check
        if bad is None:
            return
        kept = f"the last good checkpoint is {self.saved_path}" if self.saved_path else "no checkpoint was written"
        raise TrainingDiverged(
            f"the loss became NaN or infinite at step {bad}: lower the learning rates (optim.lr), use trainer.amp=bf16 "
            f"or false instead of fp16, or set trainer.grad_clip; {kept} (trainer.nan_policy=skip drops such updates)"
        )

    def run_seconds(self) -> float:
        """Wall time of this run so far, earlier sessions (before a resume) included."""
        return self.seconds_before + time.perf_counter() - self.began

    def training_seconds(self) -> float:
        """Wall time spent training so far (evaluations excluded), earlier sessions included."""
        return self.train_seconds_before + time.perf_counter() - self.began - self.eval_seconds

    def summary(self, status: str, reason: str | None = None) -> dict:
        """What summary.json says about this run (see gantrain/summary.py)."""
        training = max(self.training_seconds() - self.train_seconds_before, 1e-9)  # this session's, as images_total
        return {
            "status": status, "reason": reason, "steps": self.step, "max_steps": self.settings.max_steps,
            "wall_seconds": round(self.run_seconds(), 3), "train_seconds": round(self.training_seconds(), 3),
            "images_per_sec": round(self.images_total / training, 1),
            "best_metric": self.settings.best_metric, "best": self.best or None,
            "final_metrics": {k: v for k, v in self.evaluations[-1].items() if k not in ("step", "seconds")} if self.evaluations else {},
            "evaluations": self.evaluations, "overrides": list(self.meta.get("overrides", [])),
            "choices": self.meta.get("choices", {}), "gantrain_version": self.meta.get("gantrain_version"),
        }

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        with self.unwrapped():
            modules = {name: module.state_dict() for name, module in self.system.checkpoint_modules().items()}
        return {
            **modules,
            "step": self.step,
            "optimizers": {"generator": self.opt_g.state_dict(), "discriminator": self.opt_d.state_dict()},
            "scalers": {"generator": self.scaler_g.state_dict(), "discriminator": self.scaler_d.state_dict()},
            "rng": rng_state(self.device),
            "batches": self.batches.state_dict(),
            "data_shape": list(self.data.shape),
            "num_classes": self.data.num_classes,
            "best": self.best,
            "evaluations": self.evaluations,
            "early_stopping": self.early.state_dict(),
            "run_seconds": self.run_seconds(),
            "train_seconds": self.training_seconds(),
            "fixed": {k: v.cpu() for k, v in self.fixed.items()},
            **self.meta,
        }

    def save(self) -> Path:
        self.check_finite()  # never write a checkpoint of a diverged model
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        if self.main:
            with self.stop_when_disk_full():
                path = save_checkpoint(self.state_dict(), self.run_dir / "checkpoints", self.step, self.settings.keep_checkpoints)
        self.saved_path = path
        self.saved_step = self.step
        return self.saved_path

    @contextlib.contextmanager
    def stop_when_disk_full(self):
        """A checkpoint that does not fit on the disk stops the run in one line naming what to resume from,
        with TensorBoard flushed (finish() and interrupt() save outside fit()'s own clean-up)."""
        try:
            yield
        except DiskFull as err:
            with contextlib.suppress(OSError):  # the event file may not fit either; the message matters more
                self.logger.close()
            kept = (f"the last good checkpoint is {self.saved_path}; free some space (or lower trainer.keep_checkpoints) "
                    f"and resume with: gantrain trainer.resume={self.run_dir}" if self.saved_path else
                    "no checkpoint was written yet; free some space and start again")
            raise DiskFull(f"{err}; {kept}") from err

    def load_networks(self, state: dict) -> None:
        """Each checkpointed network's weights, refused with the mismatch named when they do not fit."""
        with self.unwrapped():
            for name, module in self.system.checkpoint_modules().items():
                if name not in state:
                    raise UserError(f"checkpoint {state['path']} has no '{name}' weights: it was not written by this kind of model")
                try:
                    module.load_state_dict(state[name])
                except RuntimeError as err:
                    detail = next((line.strip() for line in str(err).splitlines()[1:] if line.strip()), str(err))
                    was = state.get("choices", {}).get("model", "another model")
                    raise UserError(f"checkpoint {state['path']} (model={was}) does not fit this {name}: {detail}") from err

    def load(self, path: str) -> int:
        """Restore everything a step depends on; returns the step to continue from."""
        state = load_checkpoint(path)
        saved_shape = tuple(state.get("data_shape", self.data.shape))
        if saved_shape != tuple(self.data.shape):
            raise UserError(f"checkpoint {state['path']} was trained on samples of shape {'x'.join(map(str, saved_shape))}, "
                            f"this data gives {'x'.join(map(str, self.data.shape))}: resume with the same data and image size")
        self.load_networks(state)
        self.opt_g.load_state_dict(state["optimizers"]["generator"])
        self.opt_d.load_state_dict(state["optimizers"]["discriminator"])
        self.scaler_g.load_state_dict(state["scalers"]["generator"])
        self.scaler_d.load_state_dict(state["scalers"]["discriminator"])
        self.batches.load_state_dict(state["batches"])
        self.fixed = state["fixed"]
        self.best = state.get("best", {})
        self.evaluations = list(state.get("evaluations", []))
        self.early.load_state_dict(state.get("early_stopping", {}))
        self.seconds_before = float(state.get("run_seconds", 0.0))
        self.train_seconds_before = float(state.get("train_seconds", self.seconds_before))
        set_rng_state(state["rng"], self.device)
        self.step = self.saved_step = int(state["step"])
        if self.world > 1:  # the saved streams are rank 0's: give each rank its own again
            torch.manual_seed(self.seed + 1_000_003 * self.rank + self.step)
        self.saved_path = Path(state["path"])
        log.info("resumed from %s at step %d", state["path"], self.step)
        return self.step
