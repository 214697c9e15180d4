"""Every command that the README and the User guide show is run, shortened and with its placeholders filled by tiny
fixtures; a shown command that is neither run nor listed in NOT_RUN fails the suite. A command shown on several
pages runs once. The Studies' and the Architecture page's commands (re-makes of measurements that take minutes to
hours) are checked without running: gantrain's by the command-line check that runs before every training, the
other console commands by composing their configs, the scripts by their own argument parsers.

How a command becomes what runs is in one place, `runnable()`. Most commands run in this process
through the console scripts' own functions (the exit status is the one `sys.exit` would give the
shell); one command of each entry point, the scripts and the commands that need an environment run
as processes of their own (`AS_PROCESS`), forked from a warm interpreter by the `cli` fixture, and the
set-up command as a real subprocess through the installed console script.
"""

import io
import json
import logging
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
import yaml
from PIL import Image
from support import REPO


README, DOCS = REPO / "README.md", REPO / "docs"
# pages whose commands run here, and pages whose commands are checked without running (the Changelog is history)
RUN_PAGES = (README, DOCS / "index.md", *sorted((DOCS / "guide").glob("*.md")))
CHECK_PAGES = (*sorted((DOCS / "studies").glob("*.md")), DOCS / "architecture.md")
PROGRAMS = ("gantrain", "gantrain-search", "gantrain-sample", "gantrain-eval", "gantrain-report", "gantrain-export",
            "gantrain-import")

PROSE_NAME = r"^gantrain-(search|sample|eval|export|report|import)$"  # `gantrain-eval` prints a table ...
# Shown commands that cannot run here, with the reason (a regular expression searched in the command).
NOT_RUN = {
    r"trainer\.device=cuda": "needs a CUDA GPU; the test machines have none (the CPU path of each recipe runs)",
    r"^torchrun --nproc_per_node=4 ": "4 GPU processes; tests/unit/training/test_distributed.py runs DDP with 2 gloo "
                                      "CPU processes",
    r"^torchrun --nnodes=2 ": "two nodes and a rendezvous host (and `...` stands for any gantrain arguments)",
    r"hydra/launcher=slurm": "needs a SLURM cluster (tests/commands/test_cli.py composes the launcher preset)",
    r"^python scripts/report_screenshot\.py": "needs Chromium; tests/unit/search/test_sweeps.py renders a report page "
                                               "with it where one is installed and skips with the reason where none is",
    PROSE_NAME: "the program's name in prose, not a command",
}

# Commands the pages imply without spelling them out, run too.
IMPLIED = {
    "gantrain-eval real=mnist fake=path/to/images data.root=../shared/data":
        "the `# or fake=<image folder>` comment of the Metrics block, with an image folder",
}

# The set-up command runs as a real subprocess, through the console script pip installed.
AS_SUBPROCESS = r"^gantrain$"
# Run as processes of their own (a regular expression searched in the shown command); the rest run in-process.
AS_PROCESS = (
    r"^gantrain-sample run=\S+ n=\d+ out=samples\.npz$",
    r"^gantrain-eval run=\S+ metrics=",
    r"hydra\.searchpath=",                  # the user's package comes through PYTHONPATH
    r"^python scripts/",
    r"^[A-Z_]+=\S* ",                        # an environment variable first (OMP_NUM_THREADS=1 gantrain ...)
)

# The run each `outputs/DATE/TIME` means, when it is not the shared tiny run: the shown command it follows.
RUN_MADE_BY = {
    r"input=": r"^gantrain experiment=cyclegan data\.root=path/to/horse2zebra$",  # translate with a CycleGAN
    r"label=": r"^gantrain experiment=cgan_mnist ",                                # a class of a conditional GAN
    r"trust_checkpoint=true": r"^gantrain hydra\.searchpath=",                     # a model of the user's own
    r"^gantrain-sample .*(truncation=|mode=classes)": r"^gantrain experiment=cgan_mnist ",  # normal latents, classes
    r"trainer\.init_from=": r"^gantrain data=mnist data\.root=data data\.image_size=32 ",  # the guide's source network
}
# Shown commands whose outputs a later command reads.
NEEDS = {
    r"^gantrain-report outputs/search/gantrain": r"^gantrain-search hydra/sweeper=gan_search ",  # its default folder
    r"^gantrain-report outputs/search($| )": r"hydra\.sweep\.dir=outputs/search",
    r"fake=samples\.npz": r"out=samples\.npz",
    r"data\.root=data/mnist2inverted": r"^python scripts/make_unpaired_demo\.py",
    r"run=runs/ffhq256": r"^gantrain-import ",  # the official networks imported (the golden file's, 16x16)
}


# ------------------------------------------------------------------ extracting the pages' commands
def is_command(text: str) -> bool:
    try:
        words = shlex.split(text)
    except ValueError:
        return False
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)] or [""]
    return (words[0] in PROGRAMS or (words[0] == "torchrun" and "gantrain" in words)
            or (words[0] == "python" and len(words) > 1 and words[1].startswith("scripts/")))


def page_commands(text: str) -> list[str]:
    """gantrain, gantrain-sample, gantrain-eval, torchrun ... gantrain and `python scripts/...` commands of a
    page's ```bash blocks (continuations joined, comments dropped, the part after the last `&&`) and of its
    inline code in prose and tables, in order, each once, whitespace normalised."""
    found, prose, block, pending = [], [], None, ""
    for line in text.splitlines():
        fence = re.match(r"\s*```(\w*)", line)
        if fence:
            block = None if block is not None else fence.group(1)
            prose.append("")
            continue
        if block is None:
            prose.append(line)
        elif block == "bash":
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            logical, pending = re.sub(r"(^|\s)#.*$", "", pending + line), ""
            found.append(logical.split("&&")[-1])
    found += re.findall(r"`([^`]+)`", "\n".join(prose))
    commands = [" ".join(c.split()) for c in found if is_command(c)]
    return list(dict.fromkeys(commands))


def not_run_reason(command: str) -> str | None:
    return next((why for pattern, why in NOT_RUN.items() if re.search(pattern, command)), None)


def commands_of(pages) -> list[str]:
    """The commands of these pages, in order, each once (a command several pages show runs once)."""
    return list(dict.fromkeys(c for page in pages for c in page_commands(page.read_text())))


COMMANDS = commands_of(RUN_PAGES)
RUN = [c for c in COMMANDS if not_run_reason(c) is None] + list(IMPLIED)
# a command that runs needs no check, and a program's name is not a command
CHECKED = [c for c in commands_of(CHECK_PAGES) if c not in COMMANDS and not re.search(PROSE_NAME, c)]


# ------------------------------------------------------------------ what runs
CAPS = {  # key: the largest value a test run uses (sweeps a,b,c are left alone)
    "trainer.max_steps": 4,         # trainer=debug's length; a resumed copy of the 4-step run goes to 6
    "trainer.batch_size": 8,        # trainer=debug's batch: the fixtures hold a few dozen images
    "trainer.decay_start": 2,       # before max_steps, as the pages' pairs are
    "trainer.sample_every": 2,
    "trainer.eval_every": 4,        # one evaluation, at the end
    "hydra.launcher.n_jobs": 1,     # joblib in this process (worker processes would add 11 s; Hydra tests its plugin)
    "n": 64,                        # gantrain-sample n=10000
    "num_samples": 64,              # gantrain-eval num_samples=10000
    "hydra.sweeper.n_trials": 1,    # a search: one trial shows it runs (tests/unit/search runs several)
    "model.generator.width": 8,     # the networks trainer=debug would pick (a command-line width beats it)
    "model.discriminator.width": 8,
    "model.generator.n_blocks": 2,
}
SCRIPT_FLAGS = {  # each script's smallest settings, on the tiny data; placeholders filled from `places`
    "make_unpaired_demo.py": ["--train", "16", "--test", "4"],
    # one recipe: each recipe is a shown command of its own, run here (test_every_gallery_recipe_is_a_shown_command)
    "readme_pictures.py": ["toy_gaussian", "--data", "../shared/data", "--steps", "2", "--out", "{scratch}/pictures"],
    "bench.py": ["--steps", "1", "--warmup", "0", "--batch-size", "8", "--width", "8", "--workers", "0", "--matmul-size", "256",
                 "--data", "../shared/data", "--images", "path/to/images", "--out", "{scratch}/bench"],
    "eval_speed.py": ["--num-samples", "64", "--real-samples", "128", "--classifier-epochs", "1", "--repeats", "1"],
    "gpu_check.py": ["--steps", "2"],  # without a GPU it only says so; with one, 2 timed steps per row
    "bench_channels_last.py": ["--steps", "1", "--rounds", "1", "--cases", "default"],
    "truncation_study.py": ["--steps", "2", "--num-samples", "64", "--real-samples", "128", "--classifier-epochs", "1",
                            "--out", "{scratch}/truncation"],
}


def runnable(command: str, places: dict[str, str]) -> list[str]:
    """The argv the test runs for a shown command. Every rewrite the test makes is here:

    - placeholders: a value (`x=VALUE` or a bare word) that is a key of `places` becomes its fixture
      (`outputs/DATE/TIME` -> a tiny run, `/data/celeba` -> a tiny CelebA folder, ...); relative paths
      (`data`, `../shared/data`, `path/to/images`, `samples.npz`, `my_configs`) exist as written in the
      test's working directory and stay; `scripts/X.py` is this checkout's script and `python` this Python;
    - training (`gantrain` without --help/--cfg): `trainer=debug` appended, and the values in CAPS capped
      (a command-line value beats trainer=debug's; trainer=debug shrinks CycleGAN itself); `trainer.eval_every`
      gets tiny metrics settings;
    - gantrain-sample `n=` and gantrain-eval `num_samples=` capped, and gantrain-eval gets `real_samples=128
      classifier_epochs=1`;
    - scripts get SCRIPT_FLAGS: their smallest settings, on the tiny data, writing into a scratch folder.
    """
    words = [places.get(w, w) for w in shlex.split(command)]
    words = [w.split("=", 1)[0] + "=" + places[w.split("=", 1)[1]] if "=" in w and w.split("=", 1)[1] in places
             else w for w in words]
    env = env_words(words)
    argv = words[len(env):]
    if argv[0] == "python":
        script = Path(argv[1]).name
        flags = [f.format(**places) for f in SCRIPT_FLAGS[script]]
        return env + [sys.executable, str(REPO / argv[1]), *argv[2:], *flags]
    resume = any(w.startswith("trainer.resume=") for w in argv)
    argv = [cap(w, resume) for w in argv]
    keys = {w.split("=", 1)[0] for w in argv if "=" in w}
    if argv[0] in ("gantrain", "gantrain-search") and not {"--help", "--cfg"} & set(argv):
        argv += [] if "trainer=debug" in argv else ["trainer=debug"]
        if "trainer.eval_every" in keys:
            argv += ["metrics.num_samples=64", "metrics.real_samples=128", "metrics.classifier_epochs=1"]
    if argv[0] == "gantrain-eval":
        argv += [f"{k}={v}" for k, v in (("real_samples", 128), ("classifier_epochs", 1)) if k not in keys]
    return env + argv


def cap(word: str, resume: bool) -> str:
    key, _, value = word.partition("=")
    if key not in CAPS or not re.fullmatch(r"\d+", value):
        return word
    limit = CAPS[key] + (2 if resume and key == "trainer.max_steps" else 0)
    return f"{key}={min(int(value), limit)}"


# ------------------------------------------------------------------ running
@dataclass
class Outcome:
    command: str
    argv: list[str]
    code: int
    output: str
    seconds: float
    run_dir: Path | None = None
    ok: bool = False
    extra: dict = field(default_factory=dict)

    def explain(self) -> str:
        return f"{self.command}\n  ran: {shlex.join(self.argv)}\n  exit {self.code}\n{self.output[-4000:]}"


def run_in_process(argv: list[str], cwd: Path) -> tuple[int, str]:
    """The console script's function with this argv and working directory; its exit status as the shell sees it."""
    import gantrain.cli as cli

    entry = {"gantrain": cli.train, "gantrain-search": cli.search, "gantrain-sample": cli.sample,
             "gantrain-eval": cli.evaluate, "gantrain-report": cli.report, "gantrain-export": cli.export,
             "gantrain-import": cli.import_official}[argv[0]]
    buffer, root = io.StringIO(), logging.getLogger()
    handlers, level, old_argv, old_cwd = root.handlers[:], root.level, sys.argv, os.getcwd()
    try:
        sys.argv = list(argv)
        os.chdir(cwd)
        with redirect_stdout(buffer), redirect_stderr(buffer):
            try:
                entry()
                code = 0
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
            except Exception:  # what the interpreter would print before exiting with 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
        for handler in root.handlers:  # Hydra's job logging (train.log, the console) goes with the run
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, buffer.getvalue()


def run_process(argv: list[str], cwd: Path, env: dict[str, str], cli=None) -> tuple[int, str]:
    """argv (`NAME=value` assignments first, as a shell reads them) as a process of its own: forked by `cli` when
    given, else a real subprocess."""
    assignments = dict(w.split("=", 1) for w in env_words(argv))
    argv, env = argv[len(assignments):], {**os.environ, **env, **assignments}
    if cli is not None:
        argv = argv[1:] if argv[0] == sys.executable else argv  # the forked interpreter is this Python
        proc = cli.run(*argv, cwd=cwd, env=env, timeout=600)
    else:
        proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return proc.returncode, proc.stdout + proc.stderr


class Workspace:
    """The pages' world in miniature: a working directory `main/` beside `shared/data`, the fixtures for
    absolute placeholders, the shared tiny run, and each shown command's outcome once it has run."""

    def __init__(self, root: Path, trained_run: Path, cli):
        self.root, self.cwd, self.trained_run, self.cli = root, root / "main", trained_run, cli
        self.outcomes: dict[str, Outcome] = {}
        self.places = {
            "/data/celeba": str(root / "celeba"), "/path/to/celeba": str(root / "celeba"), "/data": str(root / "cifar"),
            "scratch": str(root / "scratch"),
        }

    def run(self, command: str) -> Outcome:
        """Run a shown command once (the commands it needs first) and check what its page promises."""
        if command in self.outcomes:
            outcome = self.outcomes[command]
            assert outcome.ok, f"failed earlier (it is needed here): {outcome.explain()}"
            return outcome
        for pattern, needed in NEEDS.items():
            if re.search(pattern, command):
                self.run(self.shown_command(needed))
        places = dict(self.places)
        run = self.trained_run
        for pattern, maker in RUN_MADE_BY.items():
            if re.search(pattern, command):
                run = self.run(self.shown_command(maker)).run_dir
        if re.search(r"trainer\.resume=outputs/", command):  # a copy: the shared run stays 4 steps long
            run = self.root / "resumed" / str(len(self.outcomes))
            shutil.copytree(self.trained_run, run, ignore=shutil.ignore_patterns("step_*.pt"))
        places |= {"outputs/DATE/TIME": str(run), "outputs/2026-11-23/10-00-00": str(run)}
        argv = runnable(command, places)
        env = {"PYTHONPATH": os.pathsep.join([str(self.cwd), os.environ.get("PYTHONPATH", "")])}
        before = set(self.cwd.glob("outputs/*/*")) | set(self.cwd.glob("outputs/multirun/*/*"))
        if any(w.startswith(("trainer.resume=", "run=")) for w in argv):
            before.add(run)
        if argv[len(env_words(argv))] == "gantrain" and not {"--help", "--cfg"} & set(argv):  # it makes a run
            wait_for_a_new_second()  # two runs started in the same second would share outputs/DATE/TIME
        started = time.perf_counter()
        if re.search(AS_SUBPROCESS, command):
            code, output = run_process(argv, self.cwd, env)
        elif any(re.search(p, command) for p in AS_PROCESS):
            code, output = run_process(argv, self.cwd, env, self.cli)
        else:
            code, output = run_in_process(argv, self.cwd)
        outcome = Outcome(command, argv, code, output, time.perf_counter() - started)
        after = set(self.cwd.glob("outputs/*/*")) | set(self.cwd.glob("outputs/multirun/*/*"))
        new = sorted(after - before)
        named = re.findall(r"run directory: (\S+)", output)  # what gantrain says it wrote (two runs may share a second)
        outcome.run_dir = run if "trainer.resume=" in command else (
            Path(named[-1]) if len(named) == 1 else new[0] if len(new) == 1 else None)
        outcome.extra["new"] = new
        outcome.extra["cwd"] = self.cwd
        self.outcomes[command] = outcome
        assert code == 0, outcome.explain()
        check(outcome, self)
        outcome.ok = True
        return outcome

    def shown_command(self, pattern: str) -> str:
        (command,) = [c for c in RUN if re.search(pattern, c)]
        return command


def env_words(argv: list[str]) -> list[str]:
    """The `NAME=value` assignments a command starts with."""
    return [w for w in argv[:2] if re.fullmatch(r"[A-Z_]+=\S*", w)]


_LAST_START = [0.0]


def wait_for_a_new_second() -> None:
    if int(time.time()) == int(_LAST_START[0]):
        time.sleep(1.01 - time.time() % 1)
    _LAST_START[0] = time.time()


# ------------------------------------------------------------------ what the pages promise
def check(outcome: Outcome, ws: Workspace) -> None:
    argv, words = outcome.argv, shlex.split(outcome.command)
    words = [w for w in words if not re.fullmatch(r"[A-Z_]+=\S*", w)]
    program = words[0]
    options = dict(w.split("=", 1) for w in argv if "=" in w and not w.startswith("-"))
    if program == "python":
        SCRIPT_CHECKS[Path(words[1]).name](outcome, ws)
    elif program == "gantrain" and "--help" in argv:
        for group in ("data", "model", "loss", "optim", "trainer", "experiment"):
            assert re.search(rf"^{group}: .+", outcome.output, re.M), (group, outcome.explain())
    elif program == "gantrain" and "--cfg" in argv:
        cfg = yaml.safe_load(outcome.output)
        assert {"data", "model", "loss", "optim", "trainer"} <= set(cfg), outcome.explain()
        assert not outcome.extra["new"], "--cfg job trained nothing, yet a run directory appeared"
    elif program == "gantrain" and "-m" in argv or program == "gantrain-search":
        check_sweep(outcome, argv)
    elif program == "gantrain":
        check_run(outcome, options)
    elif program == "gantrain-sample":
        check_sample(outcome, options, ws)
    elif program == "gantrain-eval":
        check_eval(outcome, options, ws)
    elif program == "gantrain-report":
        check_report(outcome, ws)
    elif program == "gantrain-export":
        check_export(outcome, options, ws)
    elif program == "gantrain-import":
        check_import(outcome, options, ws)


def check_run(outcome: Outcome, options: dict) -> None:
    run = outcome.run_dir
    assert run is not None, f"expected one new run directory, got {outcome.extra['new']}\n{outcome.explain()}"
    for name in ("checkpoints/last.pt", "final.png", "config.yaml", "train.log", "samples/real.png", "progress.gif"):
        assert (run / name).is_file(), (name, outcome.explain())
    assert list(run.glob("events.out.tfevents.*")), outcome.explain()
    steps = int(options.get("trainer.max_steps", 4))
    saved = torch.load(run / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert saved["step"] == steps, (saved["step"], steps)
    if "trainer.eval_every" in options:
        assert (run / "checkpoints" / "best.pt").is_file(), outcome.explain()


def check_sweep(outcome: Outcome, argv: list[str]) -> None:
    options = dict(w.split("=", 1) for w in argv if "=" in w)
    if "hydra.sweep.dir" in options:
        sweep = outcome_cwd(outcome) / options["hydra.sweep.dir"]
    elif argv[0] == "gantrain-search":  # its folder is the study's, not a time stamp
        sweep = outcome_cwd(outcome) / "outputs" / "search" / options.get("hydra.sweeper.study_name", "gantrain")
    else:
        (sweep,) = [p for p in outcome.extra["new"] if p.parent.parent.name == "multirun"] or [None]
    assert sweep is not None, outcome.explain()
    if "hydra/sweeper" in options:  # a search: n_trials trials, each in its trial-NNNN directory
        expected = int(options["hydra.sweeper.n_trials"])
        jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
        assert all((job / "summary.json").is_file() for job in jobs) and (sweep / "optuna.db").is_file()
        assert "top runs:" in outcome.output, outcome.explain()
    else:
        expected = 1
        for w in argv:
            if "=" in w and not w.startswith("hydra."):
                expected *= len(w.split("=", 1)[1].split(","))
        jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == expected, (len(jobs), expected, outcome.explain())
    for job in jobs:
        assert (job / "checkpoints" / "last.pt").is_file(), (job, outcome.explain())
    if options.get("hydra/launcher") == "parallel":  # the jobs ran through joblib, not the default launcher
        launcher = yaml.safe_load((jobs[0] / ".hydra" / "hydra.yaml").read_text())["hydra"]["launcher"]
        assert launcher["_target_"].endswith("JoblibLauncher"), launcher
        assert f"{expected} of {expected} jobs succeeded" in outcome.output, outcome.explain()


def outcome_cwd(outcome: Outcome) -> Path:
    return outcome.extra["cwd"]


def check_report(outcome: Outcome, ws: Workspace) -> None:
    folder = ws.cwd / outcome.argv[1]
    runs = [p for p in folder.rglob("summary.json") if "failed-attempt-" not in str(p)]
    rows = (folder / "report.csv").read_text().splitlines()
    assert len(rows) == 1 + len(runs) and (folder / "report.html").is_file(), outcome.explain()
    if "--rescore" in outcome.argv:
        assert "±" in rows[1], outcome.explain()


def check_sample(outcome: Outcome, options: dict, ws: Workspace) -> None:
    run = Path(options["run"])
    if options.get("mode", "samples") != "samples":
        check_picture(outcome, options, ws)
        return
    out = ws.cwd / options["out"] if "out" in options else run / "samples.npz"  # default: beside the checkpoints
    if "input" in options:
        source = ws.cwd / options["input"]
        assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in source.iterdir()), outcome.explain()
        return
    with np.load(out) as arrays:
        images = arrays["images"]
        assert images.dtype == np.uint8 and images.ndim == 4 and len(images) == int(options.get("n", 64)), images.shape
        if "label" in options:
            assert (arrays["labels"] == int(options["label"])).all()
    assert out.with_suffix(".png").is_file(), outcome.explain()


def check_picture(outcome: Outcome, options: dict, ws: Workspace) -> None:
    """mode=interpolate|classes: a PNG; mode=walk: a GIF of points x frames frames (and its TensorBoard image)."""
    mode, run = options["mode"], Path(options["run"])
    out = ws.cwd / options["out"] if "out" in options else run / {"walk": "walk.gif"}.get(mode, f"{mode}.png")
    picture = Image.open(out)
    if mode == "walk":
        assert picture.n_frames == int(options.get("points", 4)) * int(options.get("frames", 12)), outcome.explain()
    if options.get("tensorboard") == "true":
        assert len(list(run.glob("events.out.tfevents.*"))) >= 2, outcome.explain()  # training's and the picture's


def check_export(outcome: Outcome, options: dict, ws: Workspace) -> None:
    out = ws.cwd / options["out"]
    card = json.loads(out.with_name(out.name + ".card.json").read_text())
    assert out.is_file() and out.with_name(out.name + ".card.md").is_file(), outcome.explain()
    assert card["file"] == out.name and card["check"]["max_abs_difference"] <= 1e-4, (card, outcome.explain())
    assert options["out"] in outcome.output.splitlines(), outcome.explain()  # the files written, one a line


def check_import(outcome: Outcome, options: dict, ws: Workspace) -> None:
    saved = torch.load(ws.cwd / options["out"] / "checkpoints" / "last.pt", weights_only=True, map_location="cpu")
    assert set(saved["imported"]) == {k for k in ("G", "G_ema", "D") if k in options}, outcome.explain()
    assert {"generator", "discriminator", "ema"} <= set(saved) and saved["step"] == 0, outcome.explain()


def check_eval(outcome: Outcome, options: dict, ws: Workspace) -> None:
    values = json.loads((ws.cwd / options.get("out", "metrics.json")).read_text())
    printed = set(re.findall(r"^(\w+)\s+-?[\d.]+(?:e[-+]?\d+)?$", outcome.output, re.M))
    assert printed and printed <= set(values), (printed, values, outcome.explain())
    assert {"fid", "kid", "kid_std", "is", "is_std", "precision", "recall"} <= set(values), values


def check_make_unpaired_demo(outcome: Outcome, ws: Workspace) -> None:
    out = ws.cwd / outcome.argv[outcome.argv.index("--out") + 1]
    for part in ("trainA", "trainB", "testA", "testB"):
        assert len(list((out / part).glob("*.png"))) > 0, (part, outcome.explain())


def check_readme_pictures(outcome: Outcome, ws: Workspace) -> None:
    pictures = Path(ws.places["scratch"]) / "pictures"
    assert [p.stem for p in pictures.glob("*.png")] == ["toy_gaussian"], outcome.explain()
    assert ws.docs_before == docs_state(), "the quick run changed docs/"


def check_bench(outcome: Outcome, ws: Workspace) -> None:
    rows = [line for line in outcome.output.splitlines() if re.match(r"(dcgan64|mnist)\s", line)]
    assert len(rows) == 10, outcome.explain()


def check_eval_speed(outcome: Outcome, ws: Workspace) -> None:
    assert re.search(r"^evaluation 1: 64 samples in .* fid ", outcome.output, re.M), outcome.explain()


def check_truncation_study(outcome: Outcome, ws: Workspace) -> None:
    out = Path(ws.places["scratch"]) / "truncation"
    results = json.loads((out / "results.json").read_text())["results"]
    assert (out / "truncation.png").is_file() and len(results) == 7, outcome.explain()
    assert {"fid", "is", "precision", "recall"} <= set(results[0]), results
    assert ws.docs_before == docs_state(), "the quick run changed docs/"


def check_gpu_check(outcome: Outcome, ws: Workspace) -> None:
    no_gpu = outcome.output.startswith("gpu_check: no CUDA GPU found")
    assert no_gpu or re.search(r"^check\s+result\s+images/s", outcome.output, re.M), outcome.explain()


def check_bench_channels_last(outcome: Outcome, ws: Workspace) -> None:
    """A table row for the case, both layouts timed, and their ratio."""
    row = re.search(r"^\| default \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", outcome.output, re.M)
    assert row and float(row.group(1)) > 0 and float(row.group(2)) > 0, outcome.explain()


SCRIPT_CHECKS = {"make_unpaired_demo.py": check_make_unpaired_demo, "readme_pictures.py": check_readme_pictures,
                 "bench.py": check_bench, "eval_speed.py": check_eval_speed, "gpu_check.py": check_gpu_check,
                 "truncation_study.py": check_truncation_study, "bench_channels_last.py": check_bench_channels_last}


def docs_state() -> dict[str, float]:
    return {str(p.relative_to(DOCS)): p.stat().st_mtime for p in DOCS.rglob("*")}


# ------------------------------------------------------------------ fixtures
def make_cifar(root: Path, n: int = 40) -> Path:
    """cifar-10-batches-py pickles in torchvision's layout (torchvision's md5 check is patched out in-process)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, n))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    return root


def make_celeba(root: Path, n: int = 12) -> Path:
    """img_align_celeba/*.jpg of CelebA's 178x218 size."""
    folder = root / "img_align_celeba"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(folder / f"{i:06d}.jpg")
    return root


MYGAN_YAML = """\
_target_: gantrain.systems.gan.GAN
z_dim: 128
z_dist: normal
generator:
  _target_: mypackage.nets.Generator     # __init__(shape, z_dim, ...) -> images in [-1, 1]
discriminator:
  _target_: mypackage.nets.Discriminator # __init__(shape, ...) -> logits of shape (B,)
"""

MYPACKAGE_NETS = '''"""A user's own networks, outside gantrain: the smallest that fit the guide's contract."""
import math
import torch.nn as nn


class Generator(nn.Module):
    def __init__(self, shape, z_dim, **kwargs):
        super().__init__()
        self.shape = tuple(shape)
        self.net = nn.Sequential(nn.Linear(z_dim, math.prod(self.shape)), nn.Tanh())

    def forward(self, z, labels=None):
        return self.net(z.flatten(1)).view(len(z), *self.shape)


class Discriminator(nn.Module):
    def __init__(self, shape, **kwargs):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 1))

    def forward(self, x, labels=None):
        return self.net(x).view(-1)
'''


def yaml_block(text: str) -> str:
    """The guide's ```yaml block (my_configs/model/mygan.yaml), so the test writes what the guide shows."""
    (block,) = re.findall(r"```yaml\n(.*?)```", text, re.S)
    return block


def write_official_networks(folder: Path) -> None:
    """G.pt, G_ema.pt and D.pt as the official code writes them (torch.save(net.state_dict())): the golden file's
    official 16x16 conditional G and residual D (tests/unit/models/test_stylegan2.py)."""
    golden = torch.load(REPO / "tests" / "unit" / "models" / "data" / "stylegan2_golden.pt", weights_only=True)
    for name, source in (("G", "G"), ("G_ema", "G"), ("D", "D_resnet")):
        torch.save({k[len(source) + 1:]: v for k, v in golden.items() if k.startswith(f"{source}.")
                    and k.split(".")[1] in ("mapping", "synthesis", "b4", "b8", "b16")}, folder / f"{name}.pt")


@contextmanager
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy 2-core machine two threads per process
    spin against each other (a debug run took 10 s instead of 1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OMP_NUM_THREADS", "1")  # subprocesses
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, make_data) -> Path:
    """One tiny run per session for every sample/eval/resume command: CS231n's vanilla GAN on a tiny MNIST
    (`trainer=debug`), so that its samples are 28x28 like the `real=mnist` they are scored against."""
    folder = tmp_path_factory.mktemp("trained")
    make_data.mnist(folder / "data")
    argv = ["gantrain", "experiment=cs231n_vanilla", f"data.root={folder / 'data'}", "trainer=debug",
            f"hydra.run.dir={folder / 'run'}"]
    with one_thread():
        code, output = run_in_process(argv, folder)
    assert code == 0, output
    return folder / "run"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, trained_run, make_data, cli) -> Workspace:
    root = tmp_path_factory.mktemp("docs")
    cwd = root / "main"
    make_data.mnist(root / "shared" / "data")                                        # ../shared/data/MNIST/raw
    make_data.image_tree(root / "shared" / "data" / "cifar10-5k", classes=("cat", "dog"), per_class=8, size=32)
    make_data.mnist(cwd / "data")                                                    # data.root=data
    make_celeba(cwd / "data" / "celeba")                                        # data=celeba's default root
    make_data.image_tree(cwd / "path" / "to" / "images")
    make_data.unpaired(cwd / "path" / "to" / "horse2zebra", per_domain=10)
    make_celeba(root / "celeba")                                                # /data/celeba, /path/to/celeba
    make_cifar(root / "cifar")                                                  # data.root=/data (CIFAR-10)
    (cwd / "my_configs" / "model").mkdir(parents=True)
    (cwd / "my_configs" / "model" / "mygan.yaml").write_text(yaml_block((DOCS / "guide" / "configs.md").read_text()))
    write_official_networks(cwd)  # G_ema.pt, G.pt, D.pt: official state dicts for gantrain-import
    (cwd / "mypackage").mkdir()
    (cwd / "mypackage" / "__init__.py").write_text("")
    (cwd / "mypackage" / "nets.py").write_text(MYPACKAGE_NETS)
    ws = Workspace(root, trained_run, cli)
    ws.docs_before = docs_state()
    with one_thread(), pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(cwd))  # mypackage, for in-process commands (subprocesses get PYTHONPATH)
        mp.setenv("GANTRAIN_CACHE", str(root / "cache"))  # decoded sets and eval classifiers, once per module
        # the tiny CIFAR pickles cannot match torchvision's md5 sums (in-process commands only)
        mp.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
        yield ws


# ------------------------------------------------------------------ checking without running
def check_without_running(command: str, load_script) -> None:
    """Fail when a command could not start: what its program checks before doing any work."""
    words = shlex.split(command)
    program, args = words[len(env_words(words)):][0], words[len(env_words(words)):][1:]
    if program == "gantrain":
        from gantrain.cli.checks import check_command_line
        from gantrain.errors import UserError

        try:  # what `gantrain` checks before Hydra makes a run directory: composition, keys, types, values
            check_command_line(args)
        except UserError as err:
            pytest.fail(f"{command}\n  gantrain: error: {err}")
    elif program in ("gantrain-sample", "gantrain-eval", "gantrain-export", "gantrain-import"):
        compose_command(program, args, command)
    elif program == "gantrain-report":
        check_report_flags(args, command)
    elif program == "python":
        parse_script_arguments(load_script(Path(args[0]).stem), args[1:], command)
    else:
        pytest.fail(f"{command}: no check for {program}")


def compose_command(program: str, args: list[str], command: str) -> None:
    """The config of gantrain-sample, -eval or -export composed with these overrides (unknown keys fail)."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from gantrain.cli.commands import COMMAND_CONFIG_PATH

    try:
        with initialize_config_module(COMMAND_CONFIG_PATH.removeprefix("pkg://"), version_base="1.3"):
            compose(program.removeprefix("gantrain-"), overrides=args)
    except HydraException as err:
        pytest.fail(f"{command}\n  {str(err).splitlines()[0]}")


def check_report_flags(args: list[str], command: str) -> None:
    """gantrain-report's own help names every flag the command uses, and a folder is given."""
    import gantrain.cli as cli

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        cli.report(["--help"])
    flags = [a for a in args if a.startswith("-")]
    unknown = [f for f in flags if not re.search(rf"(^|[\s,]){re.escape(f)}\b", out.getvalue(), re.M)]
    assert not unknown and [a for a in args if not a.startswith("-")], (command, unknown)


def parse_script_arguments(script, args: list[str], command: str) -> None:
    """The script's own argument parser reads the command (a stale flag or value exits with status 2)."""
    assert hasattr(script, "build_parser"), f"{command}: the script needs build_parser() to be checked"
    errors = io.StringIO()
    try:
        with redirect_stderr(errors):
            script.build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{command}\n  {errors.getvalue().strip()}")


# ------------------------------------------------------------------ tests
def test_pages_commands_are_found():
    assert "gantrain" in COMMANDS and "gantrain --help" in COMMANDS
    assert any(c.startswith("gantrain experiment=cyclegan data.root=data/mnist2inverted") for c in COMMANDS)
    assert any(c.startswith("python scripts/time_to_quality.py ") for c in CHECKED)
    assert not any("#" in c or "&&" in c or "\\" in c for c in COMMANDS + CHECKED)
    example = "```bash\npip install x && gantrain a=1  # note\ngantrain -m \\\n    b=1,2\n```\nsee `gantrain c=3`.\n"
    assert page_commands(example) == ["gantrain a=1", "gantrain -m b=1,2", "gantrain c=3"]


def test_every_page_is_run_or_checked():
    """A new page of the site is either a User guide page (its commands run) or a study (they are checked)."""
    pages = {p for p in DOCS.rglob("*.md")} - {DOCS / "changelog.md"}
    assert pages == set(RUN_PAGES[1:]) | set(CHECK_PAGES), pages ^ (set(RUN_PAGES[1:]) | set(CHECK_PAGES))


def test_every_shown_command_is_run_or_listed():
    """A new command on the README or a User guide page needs a run here (nothing to do when the generic checks
    fit) or a NOT_RUN reason; a NOT_RUN entry that no longer matches a shown command is stale."""
    listed = {c for c in COMMANDS if not_run_reason(c) is not None}
    assert set(COMMANDS) == listed | (set(RUN) - set(IMPLIED))
    stale = [p for p in NOT_RUN if not any(re.search(p, c) for c in COMMANDS)]
    assert not stale, f"NOT_RUN entries that match no shown command: {stale}"
    unmatched = [p for p in (AS_SUBPROCESS, *AS_PROCESS, *RUN_MADE_BY.values(), *NEEDS.values())
                 if p.startswith("^") and not any(re.search(p, c) for c in RUN)]
    assert not unmatched, f"patterns that match no shown command: {unmatched}"
    for command in RUN:  # every command has a known program and, for scripts, its smallest settings
        words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        assert words[0] in PROGRAMS or Path(words[1]).name in SCRIPT_FLAGS, command


def gallery_recipes(data: Path) -> dict[str, list[str]]:
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from readme_pictures import recipes
    finally:
        sys.path.remove(str(REPO / "scripts"))
    return recipes(data)


def test_every_gallery_recipe_is_a_shown_command():
    """scripts/readme_pictures.py trains what the README's gallery commands train, so running those commands (below)
    covers every recipe of the script; its own README command runs one recipe."""
    data = REPO.parent / "shared" / "data"
    for name, recipe in gallery_recipes(data).items():
        words = [w.replace(str(data), "../shared/data") for w in recipe]
        if name == "default":
            assert "gantrain" in RUN
            continue
        assert any(shlex.split(c)[1:] == words for c in RUN if c.startswith("gantrain ")), (name, words)


def test_every_entry_point_is_installed_as_a_command():
    """The commands forked by the `cli` fixture run the entry point's function; the wrappers pip writes exist too."""
    for program in PROGRAMS:
        assert shutil.which(program), f"{program} is not on PATH: reinstall with pip install -e ."


def test_the_check_without_running_catches_stale_commands(load_script):
    """What the studies' commands go through fails on a moved key, an unknown option or flag, a bad value."""
    for stale in ("gantrain experiment=cs231n_dcgan trainer.ema=0.999", "gantrain experiment=cs231n_dgan",
                  "gantrain-eval run=RUN num_sample=10", "gantrain-report outputs/search --rescores 3",
                  "python scripts/time_to_quality.py mnist --at sixty", "python scripts/digits_check.py RUN --seeds 1"):
        with pytest.raises((pytest.fail.Exception, AssertionError)):
            check_without_running(stale, load_script)


@pytest.mark.parametrize("command", CHECKED)
def test_study_command_passes_its_check(command: str, load_script, tmp_path, monkeypatch):
    for folder in ("shared/data/MNIST/raw", "shared/data/cifar10-5k", "main"):  # the paths the studies name exist
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "main")  # the check probes that data folders exist and the run directory can be made
    check_without_running(command, load_script)


@pytest.mark.parametrize("command", RUN)
def test_shown_command_runs(workspace: Workspace, command: str):
    workspace.run(command)
