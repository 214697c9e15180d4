"""The training loop: D and G updates, then logging, sampling, evaluation and checkpoints at their cadence.

The Trainer knows nothing about GAN variants: it relies only on the System contract (systems/base.py), asks the
system for a D loss and a G loss and steps the two optimizers. Its clock (clock.py), objective (objective.py) and
checkpoint state (checkpoint.py) live beside it; its settings are the typed cfg.trainer (settings.py).
"""

import contextlib
import logging
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from gantrain.data import Data
from gantrain.device import resolve_device
from gantrain.errors import Interrupted, TrainingDiverged, first_line
from gantrain.systems.base import System
from gantrain.training import checkpoint, distributed
from gantrain.training.clock import Clock
from gantrain.training.loggers import Meter, NullLogger, log_evaluation, progress_line
from gantrain.training.objective import Objective
from gantrain.training.safety import DivergenceWatch, Stop, stop_on_signals
from gantrain.training.settings import TrainerConfig
from gantrain.training.speed import prepare_networks, to_memory_format
from gantrain.training.summary import run_summary, write_summary
from gantrain.training.update import linear_decay, optimizer_steps

log = logging.getLogger(__name__)


class Trainer:
    """Alternates `n_critic` D updates with one G update for `max_steps` steps (a step = one G update)."""

    def __init__(
        self, system: System, data: Data, settings: TrainerConfig, make_opt_g: Callable, make_opt_d: Callable,
        make_logger: Callable, run_dir: str | Path, meta: dict | None = None, hparams: dict | None = None,
        seed: int = 0, evaluator: Callable | None = None, report: Callable[[int, float], bool] | None = None,
    ):
        self.system, self.data, self.settings, self.run_dir = system, data, settings, Path(run_dir)
        self.meta, self.hparams, self.seed, self.evaluator = meta or {}, hparams or {}, seed, evaluator
        # report: a search trial's callback, told each evaluation; True ends the run as pruned (rank 0 evaluates, so
        # rank 0 alone reports, and the loop's stop agreement stops every rank at the same step)
        self.objective = Objective(settings.best_metric, settings.patience, settings.must_reach, settings.must_reach_by,
                                   report)
        self.clock, self.meter, self.step = Clock(), Meter(), 0
        self.stop_reason: str | None = None  # why an early-stopping rule (or the time budget) ends the run
        self.last_values: dict[str, float] = {}  # the last logging interval's means, for the progress line
        self.saved_step, self.saved_path = -1, None
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.main = self.rank == 0  # rank 0 writes the run directory; the other ranks only train
        self.device = distributed.device_for_rank(resolve_device(settings.device))
        self.memory_format = prepare_networks(system, settings, self.device)
        self.replicas = distributed.OneProcess()  # DDP's wrappers, or nothing to wrap: no_sync() and unwrapped()
        if self.world > 1:  # DDP: same start everywhere (rank 0's weights), a different noise stream per rank
            self.replicas = distributed.Replicas(system, system.trained_networks(), self.device, settings.sync_bn)
            torch.manual_seed(seed + 1_000_003 * self.rank)
        # trainer.grad_accum: no all-reduce of any network's gradients before a step's last micro-batch
        hold = lambda: self.replicas.no_sync(self.g_params + self.d_params)  # noqa: E731
        self.g_step, self.d_step = optimizer_steps(system, settings, make_opt_g, make_opt_d, self.device, hold)
        self.g_params, self.d_params = self.g_step.params, self.d_step.params
        self.opt_g, self.scaler_g, self.opt_d, self.scaler_d = (self.g_step.optimizer, self.g_step.scaler,
                                                                self.d_step.optimizer, self.d_step.scaler)
        shard = {"rank": self.rank, "world": self.world} if self.world > 1 else {}
        self.batches = data.batches(settings.batch_size, seed, self.device, **shard)
        self.fixed = system.fixed_inputs(settings.grid_size, seed, data)
        self.make_logger, self.logger = make_logger, None

    def fit(self) -> float | None:
        """Train to max_steps: update D (n_critic times), update G, then log, sample, evaluate, checkpoint.
        Returns the run's objective: the best value of trainer.best_metric (None without evaluations)."""
        self.begin()
        bar = tqdm(total=self.settings.max_steps, initial=self.step, unit="step", dynamic_ncols=True,
                   disable=None if self.settings.progress else True)  # None: a bar on terminals, none in log files
        stop = Stop.NO
        try:
            with logging_redirect_tqdm(), stop_on_signals() as request:
                while self.step < self.settings.max_steps:
                    asked = Stop.SIGNAL if request.signum is not None else Stop.EARLY if self.stop_reason else Stop.NO
                    stop = Stop(distributed.largest(int(asked)))
                    if stop:
                        break
                    self.train_step()
                    bar.update(1)
                    self.periodic(bar)
                    self.stop_reason = self.stop_reason or self.clock.budget_spent(self.settings.max_seconds)
        except BaseException as err:
            if self.main and not isinstance(err, Interrupted):
                status = "diverged" if isinstance(err, TrainingDiverged) else "failed"
                write_summary(self.run_dir, self.summary(status, first_line(err)))
            self.logger.close()  # TensorBoard keeps what was logged, whatever went wrong
            raise
        finally:
            bar.close()
        if stop is Stop.SIGNAL:
            self.interrupt(request.signum or signal.SIGTERM)
        if self.stop_reason:
            log.info("stopping early at step %d: %s", self.step, self.stop_reason)
        self.finish()
        return self.objective.value

    def begin(self) -> None:
        """Resume (or start), open the logger, show the real data once."""
        start = self.load(self.settings.resume) if self.settings.resume else 0
        self.watch = DivergenceWatch(self.device, start)
        # steps <= start stay in TensorBoard (purge_step hides what a crashed session wrote after the checkpoint)
        self.logger = self.make_logger(run_dir=self.run_dir, purge_step=start + 1 if self.settings.resume else None) \
            if self.main else NullLogger()
        if start == 0:
            self.logger.grid("real", self.data.preview(self.settings.grid_size, self.seed), 0)
            # the metrics are declared too, so TensorBoard's HPARAMS tab sorts a sweep by FID
            reported = self.evaluator.reported() if self.evaluator is not None else []
            self.logger.hparams(self.hparams, {"loss/D": 0.0, "loss/G": 0.0} | {f"metrics/{m}": 0.0 for m in reported})
        if start >= self.settings.max_steps:
            log.info("the checkpoint is at step %d, trainer.max_steps=%d: nothing to train", start, self.settings.max_steps)
        self.clock.start()

    def train_step(self) -> None:
        """n_critic D updates, then one G update through the just-updated D (whose weights stay frozen)."""
        linear_decay([self.opt_g, self.opt_d], self.step, self.settings)
        self.system.step = self.step  # lazy penalties and EMA start follow the step count
        measure = (self.step + 1) % self.settings.log_every == 0
        for i in range(self.settings.n_critic):
            batch = to_memory_format(next(self.batches), self.memory_format)
            # under DDP, G's gradients are all-reduced only for the fake the G step will backpropagate through: the
            # last D step's, or none with trainer.grad_accum (the G step makes its micro-batches' fakes again)
            g_quiet = i < self.settings.n_critic - 1 or self.settings.grad_accum > 1
            with self.replicas.no_sync(self.g_params) if g_quiet else contextlib.nullcontext():
                self.meter.add(self.d_step(self.system, self.system.d_loss, batch, self.watch, measure))
            self.system.after_d_step()
        with self.replicas.no_sync(self.d_params):  # D's weights are frozen in the G step: nothing of D's to all-reduce
            self.meter.add(self.g_step(self.system, self.system.g_loss, batch, self.watch, measure, self.d_params))
        for name in (n for n, every in self.system.lazy_intervals().items() if self.step % every == 0):
            update, frozen = (self.d_step, ()) if name == "D" else (self.g_step, self.d_params)  # System.lazy_intervals
            self.meter.add(update(self.system, partial(self.system.reg_loss, name), batch, self.watch, False, frozen))
        self.step += 1
        self.watch.advance()
        self.system.after_g_step(self.step)
        self.clock.count(self.settings.batch_size * self.settings.n_critic * self.world)  # all ranks together

    @property
    def skipped(self) -> int:
        """Updates trainer.nan_policy=skip dropped."""
        return self.g_step.skipped + self.d_step.skipped

    def periodic(self, bar) -> None:
        if self.step % self.settings.log_every == 0:
            self.log_scalars(bar)
        if self.step % self.settings.sample_every == 0:
            self.sample()
        if self.settings.eval_every and self.step % self.settings.eval_every == 0:
            self.evaluate()
        if self.step % self.settings.checkpoint_every == 0:
            self.save()

    def log_scalars(self, bar) -> None:
        values = self.meter.read()  # the one host-device sync of the interval
        self.check_finite()
        values["perf/images_per_sec"] = self.clock.interval_speed()
        if self.settings.nan_policy == "skip":
            values["perf/skipped_updates"] = self.skipped
        values["lr/G"], values["lr/D"] = self.opt_g.param_groups[0]["lr"], self.opt_d.param_groups[0]["lr"]
        self.logger.scalars(values, self.step)
        bar.set_postfix(loss_D=f"{values.get('loss/D', float('nan')):.3f}", loss_G=f"{values.get('loss/G', float('nan')):.3f}",
                        img_s=f"{values['perf/images_per_sec']:.0f}", refresh=False)
        self.last_values = values

    def sample(self) -> None:
        self.check_finite()  # a diverged generator's grid would only show noise
        if not self.main:
            return
        with self.replicas.unwrapped():
            self.logger.grid("samples", self.system.preview(self.fixed), self.step)
        log.info("step %d/%d  %s", self.step, self.settings.max_steps, progress_line(self.system, self.last_values))

    def evaluate(self) -> None:
        """Metrics of the current generator (EMA when present), logged; checkpoints/best.pt follows the best."""
        if not self.main:
            return
        trained_for = self.clock.training_seconds()  # the time-to-quality curve's x: training only
        with self.clock.evaluating(), self.replicas.unwrapped():
            values = self.evaluator(self.system, self.step)
        log_evaluation(self.logger, values, self.clock.last_eval_seconds, self.clock.eval_share(), self.step)
        improved = self.objective.record(self.step, trained_for, values)
        if improved:
            with checkpoint.stop_when_disk_full(self.run_dir, self.saved_path, self.logger):
                checkpoint.save_best(checkpoint.trainer_state(self), self.run_dir / "checkpoints")
        # the final evaluation of a stopping run keeps why it stopped
        self.stop_reason = self.stop_reason or self.objective.stop_reason(improved)

    def finish(self) -> None:
        """Last grid and checkpoint (unless this step already has them), final.png and progress.gif."""
        # rank 0's logger knows whether this step has its grid; all ranks follow it (sample() agrees on NaNs)
        if distributed.broadcast_from_main(self.logger.last_grid is None or bool(self.step % self.settings.sample_every)):
            self.sample()
        if self.settings.eval_every and self.step % self.settings.eval_every:
            self.evaluate()
        if self.saved_step != self.step:
            self.save()
        # a run the pruner stopped before its end (a verdict at the last step ends nothing)
        pruned = self.objective.pruned_at is not None and self.objective.pruned_at < self.settings.max_steps
        summary = self.summary("pruned" if pruned else "stopped_early" if self.stop_reason else "finished",
                               self.stop_reason)
        self.logger.finish(summary)  # a tracking store keeps the run's outcome too
        if self.main:
            write_summary(self.run_dir, summary)
        with self.replicas.unwrapped():
            distributed.log_agreement(self.system.trained_networks())
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
        if self.settings.nan_policy != "skip":
            self.watch.check(self.saved_path)

    def summary(self, status: str, reason: str | None = None) -> dict:
        return run_summary(status, reason, self.step, self.settings.max_steps, self.clock, self.objective, self.meta)

    def save(self) -> Path:
        self.check_finite()  # never write a checkpoint of a diverged model
        path = self.run_dir / "checkpoints" / f"step_{self.step:07d}.pt"
        if self.main:
            with checkpoint.stop_when_disk_full(self.run_dir, self.saved_path, self.logger):
                path = checkpoint.save_checkpoint(checkpoint.trainer_state(self), self.run_dir / "checkpoints",
                                                  self.step, self.settings.keep_checkpoints)
        self.saved_path, self.saved_step = path, self.step
        return path

    def load(self, path: str) -> int:
        """Restore everything a step depends on; returns the step to continue from."""
        checkpoint.restore_trainer(self, path)  # sets step, saved_step and saved_path too
        if self.world > 1:  # the saved streams are rank 0's: give each rank its own again
            torch.manual_seed(self.seed + 1_000_003 * self.rank + self.step)
        return self.step
