"""The console commands, one entry function each: gantrain, gantrain-search, gantrain-sample, gantrain-eval,
gantrain-export and gantrain-report (pyproject.toml's [project.scripts] names them)."""

import argparse
import functools
import os
import sys
from pathlib import Path

import hydra
from hydra.core.plugins import Plugins
from hydra_plugins.gantrain_search import SearchSweeper
from omegaconf import DictConfig

from gantrain.cli import torchrun
from gantrain.cli.checks import check_command_line, compose_training_config
from gantrain.cli.exits import fail, reports_user_errors
from gantrain.cli.runs import train_job
from gantrain.cli.schemas import EvalCommand, ExportCommand, ImportCommand, SampleCommand
from gantrain.config.group_schemas import RunConfig
from gantrain.config.schema import validate
from gantrain.errors import UserError
from gantrain.generate import official
from gantrain.generate.export import export_run
from gantrain.generate.sampling import sample_to_files
from gantrain.generate.translate import translate_folder
from gantrain.generate.walks import DEFAULT_N, MODES, Picture, draw_picture
from gantrain.metrics import scoring
from gantrain.search.report import text_table, write_report

CONFIG_PATH = "pkg://gantrain.configs"
# gantrain-sample, gantrain-eval and gantrain-export have their own folder: beside the training groups, Hydra would read
# `metrics=[fid]` as a choice of the `metrics` group instead of the value of the eval config's key
COMMAND_CONFIG_PATH = "pkg://gantrain.cli.configs"


def hydra_command(config_name: str, schema: type | None = None, config_path: str = COMMAND_CONFIG_PATH):
    """@hydra.main for a command: Hydra reads sys.argv and composes the config, which is checked against `schema`
    before the command does anything; known failures are one line."""
    def wrap(task):
        def checked(cfg: DictConfig):
            validate(cfg, schema)
            return task(cfg)
        return hydra.main(version_base="1.3", config_path=config_path, config_name=config_name)(
            reports_user_errors(functools.wraps(task)(checked)))
    return wrap


def train() -> None:
    """`gantrain [group=option ...] [key=value ...]`: train a GAN (under torchrun: one process per device)."""
    # Hydra finds plugins by walking hydra_plugins/, which misses an editable install's (setuptools' import hook)
    Plugins.instance().register(SearchSweeper)
    with torchrun.session():
        if os.environ.get("HYDRA_FULL_ERROR") != "1":
            try:  # typos and bad values, in one line, before Hydra creates a run directory
                check_command_line(sys.argv[1:])
            except UserError as err:
                fail(str(err))
        hydra_command("config", RunConfig, CONFIG_PATH)(train_job)()


def search() -> None:
    """`gantrain-search [group=option ...] [key=value ...] [key=choice(a, b) ...]`: a search worker (`gantrain -m
    hydra/sweeper=search`, its study and trial folders in outputs/search/STUDY unless hydra.sweep.dir says where).
    Started again, or on several machines against one storage, it joins the same study (gantrain/search/sweeper.py)."""
    argv = sys.argv[1:]
    defaults = [] if any(a.lstrip("+").startswith("hydra/sweeper=") for a in argv) else ["hydra/sweeper=search"]
    if not any(a.startswith("hydra.sweep.dir=") for a in argv):  # not a time stamp: every worker finds the same folder
        defaults.append("hydra.sweep.dir=outputs/search/${hydra.sweeper.study_name}")
    sys.argv = [sys.argv[0], "-m", *defaults, *argv]
    train()


@hydra_command("sample", SampleCommand)
def sample(cfg: DictConfig) -> None:
    """`gantrain-sample run=<run dir|.pt> n=64 out=samples.npz`: draw samples from a trained generator;
    `mode=interpolate|walk|classes` pictures of its latent space; `input=<folder>` translates with a CycleGAN."""
    if cfg.run is None:
        raise UserError("say which run to sample from: gantrain-sample run=outputs/DATE/TIME (or a .pt file)")
    if cfg.mode not in MODES:
        raise UserError(f"mode={cfg.mode}: use {', '.join(MODES)}")
    if cfg.input is not None:
        if cfg.mode != "samples":
            raise UserError(f"mode={cfg.mode} draws from noise; input= translates a folder with a CycleGAN: drop one")
        print(translate_folder(cfg.run, cfg.input, cfg.out, cfg.direction, cfg.batch_size, cfg.device,
                               cfg.trust_checkpoint))
        return
    n = DEFAULT_N[cfg.mode] if cfg.n is None else cfg.n
    if cfg.mode == "samples":
        for path in sample_to_files(cfg.run, n, cfg.out, cfg.batch_size, cfg.device, cfg.seed, cfg.label,
                                    cfg.trust_checkpoint, cfg.truncation, cfg.tensorboard, cfg.psi, cfg.psi_cutoff):
            print(path)
        return
    picture = Picture(cfg.mode, n, cfg.seed, cfg.label, cfg.truncation, cfg.steps, cfg.points, cfg.frames, cfg.fps,
                      cfg.batch_size, cfg.psi, cfg.psi_cutoff)
    print(draw_picture(cfg.run, picture, cfg.out, cfg.tensorboard, cfg.device, cfg.trust_checkpoint))


@hydra_command("eval", EvalCommand)
def evaluate(cfg: DictConfig) -> None:
    """`gantrain-eval run=<run dir> metrics=[fid,kid,is,pr]` or `gantrain-eval real=<data> fake=<folder|npz>`."""
    scoring.run(cfg)


@hydra_command("export", ExportCommand)
def export(cfg: DictConfig) -> None:
    """`gantrain-export run=<run dir|.pt> format=onnx|torchscript out=generator.onnx`: the generator as a checked
    ONNX or TorchScript file with a model card."""
    if cfg.run is None:
        raise UserError("say which run to export: gantrain-export run=outputs/DATE/TIME format=onnx out=generator.onnx")
    for path in export_run(cfg.run, cfg.format, cfg.out, cfg.direction, cfg.truncation, cfg.seed, cfg.trust_checkpoint,
                           cfg.psi, cfg.psi_cutoff):
        print(path)


@hydra_command("import", ImportCommand)
def import_official(cfg: DictConfig) -> None:
    """`gantrain-import G_ema=G_ema.pt [G=G.pt D=D.pt] out=runs/NAME`: official StyleGAN2-ADA state dicts as a gantrain
    run folder that gantrain-sample, -eval and -export read."""
    if cfg.G_ema is None or cfg.out is None:
        raise UserError("say what to import and where: gantrain-import G_ema=G_ema.pt out=runs/NAME (G=G.pt D=D.pt "
                        "too, to fine-tune it)")
    paths = {role: cfg[role] for role in ("G_ema", "G", "D") if cfg[role] is not None}
    networks = {role: official.read_state_dict(path, role) for role, path in paths.items()}
    imported = official.convert(networks["G_ema"], networks.get("G"), networks.get("D"), cfg.mbstd_group_size,
                                cfg.num_fp16_res, cfg.conv_clamp)
    imported.sources = {role: official.source(path) for role, path in paths.items()}
    argv = official.config_overrides(imported, cfg.mbstd_group_size, cfg.data, cfg.experiment) + [f"seed={cfg.seed}"]
    run_cfg = compose_training_config(argv)
    for node in ("model", "loss") + (("data",) if cfg.data is not None else ()):
        validate(run_cfg[node], None, node)  # without data=, data.root stays to be given (gantrain-eval data.root=)
    choices = {"model": "stylegan2", "loss": "bce", "data": "folder" if cfg.data is None else cfg.data}
    for path in official.write_run(run_cfg, imported, cfg.out, choices | {"experiment": cfg.experiment}):
        print(path)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose error is one line: the problem, then the usage (exit status 2, as argparse's)."""

    def error(self, message: str) -> None:
        fail(f"{message}; {' '.join(self.format_usage().split())}")


def count(low: int):
    """An argparse type: an integer >= low (argparse turns the ValueError into its one-line usage error)."""
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(text)
        return value
    parse.__name__ = f"integer >= {low}"  # what argparse's error says was expected
    return parse


def report(argv: list[str] | None = None) -> None:
    """`gantrain-report DIR`: the runs under DIR ranked by their best metric (console, CSV, Markdown, HTML)."""
    parser = OneLineParser(prog="gantrain-report", description=report.__doc__.split(": ", 1)[1])
    parser.add_argument("folder", type=Path, help="a sweep directory, or any folder of runs (e.g. outputs/)")
    parser.add_argument("--out", type=Path, help="where report.{csv,md,html,json} go (default: the folder)")
    parser.add_argument("--rescore", type=count(0), default=0, metavar="K", help="score the top K runs again")
    parser.add_argument("--seeds", type=count(1), default=3, help="fresh sampling seeds per re-scored run")
    parser.add_argument("--num-samples", type=count(1), default=None,
                        help="samples per re-scoring (default: as many as the run's own evaluations)")
    args = parser.parse_args(argv)
    try:
        table, out = write_report(args.folder.expanduser(), args.out, args.rescore, args.seeds, args.num_samples)
    except FileNotFoundError as err:
        fail(str(err))
    print(text_table(table))
    print(f"\n{out / 'report.html'} (and report.csv, report.md)")
