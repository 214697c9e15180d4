"""Console entry points (`gantrain`, `gantrain-sample`, `gantrain-eval`, `gantrain-export`): thin Hydra wrappers
around build, the Trainer, sampling, evaluation and export."""

import functools
import hashlib
import logging
import os
import sys
from datetime import datetime
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from gantrain import distributed, trainer_config  # noqa: F401  (registers the trainer schema with Hydra)
from gantrain.config_migration import migrate_config
from gantrain.errors import DiskFull, Interrupted, TrainingDiverged, UserError
from gantrain.objective import direction

log = logging.getLogger("gantrain")
CONFIG_PATH = "pkg://gantrain.configs"
# gantrain-sample, gantrain-eval and gantrain-export have their own folder: beside the training groups, Hydra would read
# `metrics=[fid]` as a choice of the `metrics` group instead of the value of the eval config's key
COMMAND_CONFIG_PATH = "pkg://gantrain.cli_configs"


# ------------------------------------------------------------------ run directories on resume
def run_dir_of(resume) -> Path | None:
    """The run directory a `trainer.resume` value belongs to, or None for a checkpoint outside any run."""
    if not resume:
        return None
    p = Path(str(resume)).expanduser()
    if p.is_dir():
        return p if (p / "checkpoints").is_dir() else None
    if p.parent.name == "checkpoints":
        return p.parent.parent
    return None


def _resolver_run_dir(resume, default: str) -> str:
    run = run_dir_of(resume)
    return str(run) if run else default


def _resolver_trial_dir(overrides) -> str:
    """A search trial's directory: a digest of its overrides (the same parameters, the same directory)."""
    return "trial-" + hashlib.sha1(str(overrides).encode()).hexdigest()[:10]


def _resolver_hydra_subdir(resume, stamp: str) -> str:
    # a resumed run keeps its original .hydra/ and records this invocation beside it
    return f".hydra/resume-{stamp}" if run_dir_of(resume) else ".hydra"


OmegaConf.register_new_resolver("gantrain_run_dir", _resolver_run_dir, replace=True)
OmegaConf.register_new_resolver("gantrain_hydra_subdir", _resolver_hydra_subdir, replace=True)
OmegaConf.register_new_resolver("gantrain_direction", lambda metric: direction(str(metric)), replace=True)
OmegaConf.register_new_resolver("gantrain_trial_dir", _resolver_trial_dir, replace=True)


# ------------------------------------------------------------------ errors
EXIT_STATUS = {UserError: 2, TrainingDiverged: 1, DiskFull: 1}


def reports_user_errors(task):
    """Known failures become one line on stderr and an exit status (HYDRA_FULL_ERROR=1 shows the trace).

    In a sweep, a failing job is recorded (FAILED in its directory, read by SweepSummary) and the
    other jobs go on; Ctrl-C / SIGTERM still stop everything.
    """

    @functools.wraps(task)
    def wrapper(cfg: DictConfig):
        try:
            return task(cfg)
        except Interrupted as err:
            print(f"{prog_name()}: {err}", file=sys.stderr)
            sys.exit(128 + err.signum)
        except Exception as err:
            known = type(err) in EXIT_STATUS or isinstance(err, UserError)
            if os.environ.get("HYDRA_FULL_ERROR") == "1" or not (known or _is_multirun()):
                raise
            if _is_multirun():
                mark_failed(err, known)
                return None
            print(f"{prog_name()}: error: {err}", file=sys.stderr)
            sys.exit(EXIT_STATUS.get(type(err), 2))

    return wrapper


def prog_name() -> str:
    name = Path(sys.argv[0]).name
    return "gantrain" if name == "__main__.py" else name  # python -m gantrain / torchrun -m gantrain


def _is_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def mark_failed(err: Exception, known: bool) -> None:
    """A sweep job's failure: logged (with the trace when unexpected) and written to its FAILED file."""
    if known:
        log.error("%s", err)
    else:
        log.exception("job failed")
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    (Path(HydraConfig.get().runtime.output_dir) / "FAILED").write_text(f"{type(err).__name__}: {reason}\n")


class SweepSummary(Callback):
    """At the end of `gantrain -m`: which jobs failed and why; exit status 1 when any did."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        jobs = sorted((p for p in sweep.iterdir() if (p / ".hydra").is_dir()), key=lambda p: (len(p.name), p.name))
        failed = [p for p in jobs if (p / "FAILED").is_file()]
        print(f"sweep {sweep}: {len(jobs) - len(failed)} of {len(jobs)} jobs succeeded", file=sys.stderr)
        print_top_runs(sweep)
        for job in failed:
            overrides = " ".join(OmegaConf.load(job / ".hydra" / "overrides.yaml"))
            print(f"  job {job.name} ({overrides}) failed: {(job / 'FAILED').read_text().strip()}", file=sys.stderr)
        if failed:
            sys.exit(1)


def print_top_runs(sweep: Path, top: int = 5) -> None:
    """The best runs of the sweep (by their summaries), and where the full report comes from."""
    from gantrain.report import find_runs, rows, text_table

    runs = find_runs(sweep)
    if any(run.best is not None for run in runs):
        print(f"top runs:\n{text_table(rows(runs), limit=top)}\n(gantrain-report {sweep}: the whole ranking, "
              f"report.html)", file=sys.stderr)


# ------------------------------------------------------------------ overrides
def user_overrides() -> list:
    """The command line's overrides (hydra.* excluded), parsed."""
    parsed = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    return [o for o in parsed if not o.key_or_group.startswith("hydra")]


def hparams_of(cfg: DictConfig) -> dict:
    """The settings that tell runs apart in TensorBoard: the groups chosen and every value overridden."""
    choices = HydraConfig.get().runtime.choices
    params = {g: choices.get(g) for g in ("experiment", "model", "data", "loss", "optim", "trainer") if choices.get(g)}
    params["seed"] = cfg.seed
    for o in user_overrides():
        key = o.key_or_group
        params[key] = choices.get(key) if key in choices else OmegaConf.select(cfg, key, default=None)
    return params


def resumed_config(cfg: DictConfig, saved: dict, saved_choices: dict) -> DictConfig:
    """The checkpoint's config with this command line's key=value overrides on top.

    `gantrain trainer.resume=RUN trainer.max_steps=40` continues RUN as it was configured; choosing a
    different group option (model=..., data=...) would not fit the saved weights and is refused.
    """
    merged = OmegaConf.create(migrate_config(saved))
    choices = HydraConfig.get().runtime.choices
    for o in user_overrides():
        key = o.key_or_group
        if key in choices:
            if saved_choices.get(key) != choices.get(key):
                raise UserError(
                    f"{key}={choices.get(key)}: the run being resumed used {key}={saved_choices.get(key)}; "
                    f"a resumed run keeps its config groups (drop {key}=... or start a new run)"
                )
        elif not o.is_delete():
            OmegaConf.update(merged, key, OmegaConf.select(cfg, key, default=None), force_add=True)
    merged.trainer.resume = cfg.trainer.resume
    return merged


# ------------------------------------------------------------------ gantrain
@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
@reports_user_errors
def _train(cfg: DictConfig) -> float | None:
    """One run; returns its objective (the best value of trainer.best_metric, None without evaluations).
    A run that fails before training starts still gets a summary.json saying so."""
    from gantrain.summary import FILE, write_summary

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        return train_run(cfg)
    except Exception as err:
        if distributed.is_main() and not (run_dir / FILE).exists():
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            write_summary(run_dir, {"status": "failed", "reason": reason, "steps": 0, "best": None,
                                    "overrides": list(HydraConfig.get().overrides.task)})
        raise


def train_run(cfg: DictConfig) -> float | None:
    from gantrain.build import build_trainer
    from gantrain.checkpoint import load_checkpoint
    from gantrain.device import device_for_sweep_job
    from gantrain.trust import check_saved_config, targets_in

    choices = {k: v for k, v in HydraConfig.get().runtime.choices.items() if not k.startswith("hydra")}
    if _is_multirun():  # a sweep run again: finished jobs answer from their summary, interrupted ones resume
        recorded = continue_sweep_job(cfg, Path(HydraConfig.get().runtime.output_dir))
        if recorded is not None:
            return recorded["best"]["value"] if recorded.get("best") else None
        if not distributed.launched_by_torchrun():  # parallel jobs on a multi-GPU machine: one GPU each
            cfg.trainer.device = device_for_sweep_job(cfg.trainer.device, HydraConfig.get().job.num)
    if cfg.trainer.resume:
        saved = load_checkpoint(cfg.trainer.resume)
        # the saved config is built below: it may name only gantrain's code or what this command line names
        check_saved_config(saved.get("config", {}), f"checkpoint {saved['path']}", cfg.trust_checkpoint,
                           also_allowed=[target for _, target in targets_in(cfg)])
        cfg = resumed_config(cfg, saved.get("config", {}), saved.get("choices", {}))
        choices = saved.get("choices", choices)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if distributed.is_main():
        OmegaConf.save(cfg, run_dir / "config.yaml", resolve=True)  # the config this run really uses
    meta = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": choices,
            "overrides": [o for o in HydraConfig.get().overrides.task if not o.startswith("hydra.")]}
    log.info("run directory: %s", run_dir)
    return build_trainer(cfg, run_dir, meta=meta, hparams=hparams_of(cfg)).fit()


def continue_sweep_job(cfg: DictConfig, job_dir: Path) -> dict | None:
    """A sweep job whose directory already holds a run: its summary when it finished (nothing to train);
    otherwise None, after pointing trainer.resume at its checkpoint (interrupted) or moving a failed
    attempt's files aside (it runs again from the start; nothing is deleted)."""
    from gantrain.summary import DONE, read_summary

    recorded = read_summary(job_dir)
    if recorded and recorded.get("status") in DONE:
        best = recorded.get("best") or {}
        log.info("sweep job %s already %s (best %s %s): not training it again", job_dir, recorded["status"],
                 best.get("metric", cfg.trainer.best_metric), best.get("value"))
        return recorded
    failed = (job_dir / "FAILED").is_file() or (recorded or {}).get("status") in ("failed", "diverged")
    if failed:
        attempt = job_dir / f"failed-attempt-{datetime.now():%Y%m%d-%H%M%S}"
        attempt.mkdir()
        for item in job_dir.iterdir():
            if item != attempt and item.name != ".hydra" and not item.name.startswith("failed-attempt-"):
                item.rename(attempt / item.name)
        log.info("sweep job %s failed before: its files moved to %s; training it again", job_dir, attempt.name)
    elif (job_dir / "checkpoints" / "last.pt").is_file() and not cfg.trainer.resume:
        log.info("sweep job %s was interrupted: resuming it from its last checkpoint", job_dir)
        cfg.trainer.resume = str(job_dir)
    return None


def train() -> None:
    """`gantrain [group=option ...] [key=value ...]`: train a GAN (under torchrun: one process per device)."""
    if distributed.launched_by_torchrun():
        distributed.init_from_env()
        sys.argv += torchrun_overrides(sys.argv[1:])
    finished = False
    try:
        _checked_train()
        finished = True
    finally:
        distributed.shutdown(finished)


def torchrun_overrides(argv: list[str]) -> list[str]:
    """All ranks write into rank 0's run directory; only rank 0 writes Hydra's files and logs at INFO."""
    if "-m" in argv or "--multirun" in argv:
        print(f"{prog_name()}: error: torchrun runs one training job: drop -m (sweep with Hydra's launchers instead)",
              file=sys.stderr)
        sys.exit(2)
    extra = []
    stamp = distributed.broadcast_from_main(datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("trainer.resume=")), None)
    if not any(a.startswith("hydra.run.dir=") for a in argv) and not run_dir_of(resume):
        extra.append(f"hydra.run.dir=outputs/{stamp}")
    if not distributed.is_main():
        extra += ["hydra.output_subdir=null", "hydra/job_logging=stdout", "hydra.job_logging.root.level=WARNING"]
    return extra


def _checked_train() -> None:
    if os.environ.get("HYDRA_FULL_ERROR") != "1":
        from gantrain.cli_checks import check_command_line

        try:  # typos and bad values, in one line, before Hydra creates a run directory
            check_command_line(sys.argv[1:])
        except UserError as err:
            print(f"{prog_name()}: error: {err}", file=sys.stderr)
            sys.exit(2)
    _train()


# ------------------------------------------------------------------ gantrain-sample
@hydra.main(version_base="1.3", config_path=COMMAND_CONFIG_PATH, config_name="sample")
@reports_user_errors
def _sample(cfg: DictConfig) -> None:
    from gantrain.sampling import sample_to_files

    if cfg.run is None:
        raise UserError("say which run to sample from: gantrain-sample run=outputs/DATE/TIME (or a .pt file)")
    from gantrain.walks import DEFAULT_N, MODES, Picture, draw_picture

    if cfg.mode not in MODES:
        raise UserError(f"mode={cfg.mode}: use {', '.join(MODES)}")
    if cfg.input is not None:
        from gantrain.translate import translate_folder

        if cfg.mode != "samples":
            raise UserError(f"mode={cfg.mode} draws from noise; input= translates a folder with a CycleGAN: drop one")
        print(translate_folder(cfg.run, cfg.input, cfg.out, cfg.direction, cfg.batch_size, cfg.device, cfg.trust_checkpoint))
        return
    n = DEFAULT_N[cfg.mode] if cfg.n is None else cfg.n
    if cfg.mode == "samples":
        for path in sample_to_files(cfg.run, n, cfg.out, cfg.batch_size, cfg.device, cfg.seed, cfg.label,
                                    cfg.trust_checkpoint, cfg.truncation, cfg.tensorboard):
            print(path)
        return
    picture = Picture(cfg.mode, n, cfg.seed, cfg.label, cfg.truncation, cfg.steps, cfg.points, cfg.frames, cfg.fps,
                      cfg.batch_size)
    print(draw_picture(cfg.run, picture, cfg.out, cfg.tensorboard, cfg.device, cfg.trust_checkpoint))


def sample() -> None:
    """`gantrain-sample run=<run dir|.pt> n=64 out=samples.npz`: draw samples from a trained generator;
    `mode=interpolate|walk|classes` pictures of its latent space."""
    _sample()


# ------------------------------------------------------------------ gantrain-export
@hydra.main(version_base="1.3", config_path=COMMAND_CONFIG_PATH, config_name="export")
@reports_user_errors
def _export(cfg: DictConfig) -> None:
    from gantrain.export import export_run

    if cfg.run is None:
        raise UserError("say which run to export: gantrain-export run=outputs/DATE/TIME format=onnx out=generator.onnx")
    for path in export_run(cfg.run, cfg.format, cfg.out, cfg.direction, cfg.truncation, cfg.seed, cfg.trust_checkpoint):
        print(path)


def export() -> None:
    """`gantrain-export run=<run dir|.pt> format=onnx|torchscript out=generator.onnx`: the generator as a checked
    ONNX or TorchScript file with a model card."""
    _export()


# ------------------------------------------------------------------ gantrain-eval
@hydra.main(version_base="1.3", config_path=COMMAND_CONFIG_PATH, config_name="eval")
@reports_user_errors
def _evaluate(cfg: DictConfig) -> None:
    from gantrain.metrics.command import run

    run(cfg)


def evaluate() -> None:
    """`gantrain-eval run=<run dir> metrics=[fid,kid,is,pr]` or `gantrain-eval real=<data> fake=<folder|npz>`."""
    _evaluate()
