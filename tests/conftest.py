"""Shared test helpers, as fixtures: the real configs composed, small datasets made on disk (no downloads), the
tiny settings every quick run uses, one helper that trains, one shared trained run, and the console commands
run as real processes without paying for a fresh interpreter each time.

Fixtures (tests ask for them by name; nothing here is imported by a test):

    compose        compose(*overrides): the real configs, as `gantrain <overrides>` composes them
    tiny           the override tuple of the tiny GAN: trainer=debug with 8-channel networks
    tiny_cyclegan  the override tuple of a tiny CycleGAN (add data.root=...)
    load_script    load_script("digits_check"): a module of scripts/, imported from its file
    make_data      make_data.mnist(root, n=64, folder="MNIST"), .image_tree(root, classes, per_class, size),
                   .unpaired(root, per_domain): small datasets written under root, which is returned
    mnist_root     a fresh tiny MNIST (64 training images) in its own folder
    image_tree     a fresh folder of two classes of 6 small images each
    train          train(*overrides, run_dir=None, base=tiny, fit=True) -> the Trainer, trained (its run_dir: a
                   fresh folder unless given); base=() for a preset of one's own, fit=False to get it untrained
    tiny_run       a 4-step run of the tiny GAN on the bundled digits, trained once per session: read it only
                   (copy it before resuming or writing into it)
    mlflow_store   mlflow_store(folder) -> folder, holding an empty MLflow SQLite store (mlflow.db) made once a session:
                   MLflow's own first start of a store runs its schema migrations (seconds)
    cli            cli.run(*argv, cwd=..., env=None, timeout=300, check=False) -> subprocess.CompletedProcess and
                   cli.start(*argv, cwd=..., env=None) -> a process to signal, kill and wait for: argv is a console
                   script (`gantrain`, `gantrain-sample`, `gantrain-eval`) or what follows `python` (`-c CODE`,
                   `-m MODULE`, `path/to/script.py`), run as a real process forked from a warm interpreter;
                   cli.run_ranks(world, *argv, ...) runs it on `world` ranks as torchrun would
    tensors_held   tensors_held(module): every tensor a module holds, by name
    stop_loader_workers  stop_loader_workers(): shut down the DataLoader workers the running test made so far
                   (done anyway when a test ends; see below)
"""

from __future__ import annotations

import atexit
import importlib.util
import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np
import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from PIL import Image

if TYPE_CHECKING:
    import torch


def pytest_configure(config):
    """Set up the processes that run tests; xdist's controller, which only hands tests out, needs none of it (and
    would take seconds importing torch before the workers start)."""
    worker = bool(os.environ.get("PYTEST_XDIST_WORKER"))
    if not worker and config.getoption("numprocesses", None):
        return
    # Under pytest-xdist the two workers share the two cores: one thread each (and in the programs the tests
    # start), since OpenMP threads that outnumber the cores spin and can run ten times slower.
    if worker:
        os.environ["OMP_NUM_THREADS"] = "1"
    import torch
    from support import yaml_memo

    import gantrain.cli  # noqa: F401  (registers the config resolvers)

    torch.set_num_threads(1 if worker else 2)
    yaml_memo.install()
    track_data_loaders()


# pytest-xdist hands out whole files (--dist loadfile: a file's tests share its fixtures, such as the documented
# commands' runs and the two-process torchrun run) in the order they were collected (--no-loadscope-reorder: not
# by their number of tests); the slowest go first, so the two workers end together instead of one starting the
# documented commands (a third of the suite) when the other is nearly done. Seconds on 2 cores; a file not
# listed counts as quick.
SLOW_FILES = {"test_doc_commands.py": 110, "test_reliability.py": 40, "test_sweeps.py": 37, "test_workers.py": 30,
              "test_configs.py": 20,
              "test_metrics.py": 19, "test_distributed.py": 19, "test_families.py": 16, "test_cli.py": 14,
              "test_overrides_property.py": 14, "test_cyclegan.py": 10, "test_trainer.py": 8}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: -SLOW_FILES.get(item.path.name, 0))  # stable: each file's own order is kept


# Every cache gantrain writes goes to a fresh folder for this session, never the user's ~/.cache/gantrain; set at
# import so the commands the tests start inherit it.
if "GANTRAIN_CACHE" not in os.environ:
    os.environ["GANTRAIN_CACHE"] = tempfile.mkdtemp(prefix="gantrain-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GANTRAIN_CACHE"], ignore_errors=True)

# the plain tiny GAN: the default recipe's EMA, ADA and R1 off (the tests of those turn them on themselves)
TINY = ("trainer=debug", "model.generator.width=8", "model.discriminator.width=8", "model.ema=null", "model.ada=null",
        "loss.r1=0")
TINY_CYCLEGAN = ("experiment=cyclegan", "trainer=debug", "data.image_size=32", "data.load_size=36",
                 "model.generator.n_blocks=1", "model.generator.width=8", "model.discriminator.width=8",
                 "trainer.batch_size=4")


# ------------------------------------------------------------------ configs and data (plain functions, used below)
def compose_config(*overrides: str):
    """The real configs, as `gantrain <overrides>` would compose them (hydra node left out)."""
    import gantrain.cli  # noqa: F401  (registers the config resolvers)

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def write_idx(path: Path, array: np.ndarray) -> None:
    """An MNIST idx file: magic (0, 0, uint8 code, ndim), big-endian sizes, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_mnist(root: Path, folder: str = "MNIST", n: int = 64, seed: int = 0) -> Path:
    """A tiny MNIST-format dataset: bright squares whose position encodes the label."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n), ("t10k", n // 2)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 40, (count, 28, 28))
        for img, label in zip(images, labels):
            r, c = divmod(int(label), 5)
            img[4 + r * 10: 12 + r * 10, 2 + c * 5: 7 + c * 5] = 255
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


def make_unpaired(root: Path, per_domain: int = 10) -> Path:
    """trainA/, trainB/, testA/, testB/ of small RGB images: an unpaired set in the CycleGAN layout."""
    return make_image_tree(root, classes=("trainA", "trainB", "testA", "testB"), per_class=per_domain)


def make_image_tree(root: Path, classes=("cats", "dogs"), per_class: int = 6, size: int = 40) -> Path:
    """Class folders of small RGB PNG/JPEG images of two colours."""
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = rng.integers(0, 60, (size, size + 8, 3), dtype=np.uint8)
            array[..., k % 3] += 150
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(array).save(folder / f"{i:03d}{suffix}")
    return root


def held_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor a module holds, by name: parameters, buffers, extra state (e.g. CycleGAN's image pools)
    and plain tensor attributes, in lists and dicts too. A resume must leave all of them on the device."""
    import torch

    found = dict(module.named_parameters()) | dict(module.named_buffers())

    def walk(name: str, value) -> None:
        if isinstance(value, torch.Tensor):
            found[name] = value
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}.{key}", item)
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                walk(f"{name}.{i}", item)

    for prefix, sub in module.named_modules():
        prefix = f"{prefix}." if prefix else ""
        if type(sub).get_extra_state is not torch.nn.Module.get_extra_state:
            walk(f"{prefix}<extra_state>", sub.get_extra_state())
        for key, value in vars(sub).items():  # e.g. the pools' `images` and `last`, the GAN's cached `_fake`
            if key not in ("_parameters", "_buffers", "_modules"):  # those three are counted above
                walk(f"{prefix}{key}", value)
    return found


@pytest.fixture(scope="session")
def compose():
    """compose(*overrides): the real configs, as `gantrain <overrides>` composes them (hydra node left out)."""
    return compose_config


@pytest.fixture(scope="session")
def tiny() -> tuple[str, ...]:
    """The tiny GAN: trainer=debug (4 steps of batch 8, on the bundled digits) with 8-channel networks."""
    return TINY


@pytest.fixture(scope="session")
def tiny_cyclegan() -> tuple[str, ...]:
    """A tiny CycleGAN (32x32 crops, one residual block, 8-channel networks, batch 4); add data.root=..."""
    return TINY_CYCLEGAN


@pytest.fixture(scope="session")
def load_script():
    """load_script(name) -> scripts/<name>.py as a module (scripts/ is not a package)."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "scripts" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load


@pytest.fixture(scope="session")
def make_data() -> SimpleNamespace:
    """make_data.mnist(root, folder="MNIST", n=64), .image_tree(root, classes, per_class, size) and
    .unpaired(root, per_domain): small datasets written under root (returned); no downloads."""
    return SimpleNamespace(mnist=make_mnist, image_tree=make_image_tree, unpaired=make_unpaired)


@pytest.fixture
def mnist_root(tmp_path_factory) -> Path:
    """A fresh tiny MNIST (64 training and 32 test images) in a folder of its own."""
    return make_mnist(tmp_path_factory.mktemp("data"))


@pytest.fixture
def image_tree(tmp_path_factory) -> Path:
    """A fresh folder of two classes (cats/, dogs/) of 6 small PNG and JPEG images each."""
    return make_image_tree(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def tensors_held():
    """tensors_held(module): every tensor a module holds, by name (see held_tensors)."""
    return held_tensors


# ------------------------------------------------------------------ training in this process
@pytest.fixture(scope="session")
def train(tmp_path_factory):
    """train(*overrides, run_dir=None, base=TINY, fit=True): the Trainer of `base + overrides` (built with no meta:
    build_trainer records config and version itself), trained into run_dir (default: a fresh folder); fit=False
    returns it built but untrained. Session-scoped, so module- and session-scoped fixtures can train too."""
    from gantrain.config.build import build_trainer

    def train(*overrides: str, run_dir=None, base=TINY, fit: bool = True):
        run_dir = Path(run_dir) if run_dir is not None else tmp_path_factory.mktemp("train") / "run"
        trainer = build_trainer(compose_config(*base, *overrides), run_dir)
        if fit:
            trainer.fit()
        return trainer

    return train


@pytest.fixture(scope="session")
def tiny_run(train) -> Path:
    """4 steps (trainer=debug) of the tiny GAN on the bundled digits, checkpointed at steps 2 and 4: for tests that
    only read a run (sample it, load or doctor its checkpoint, resume it elsewhere). Copy it to write into it."""
    return train().run_dir


@pytest.fixture(scope="session")
def mlflow_store():
    """mlflow_store(folder) -> folder with a copy of an empty, migrated MLflow store as folder/mlflow.db (logger=mlflow's
    store for a run or a sweep in that folder); skipped where MLflow is not installed. The store is made once for the
    whole session, whichever worker asks first (the others wait for it), in the session's cache folder."""
    pytest.importorskip("mlflow")
    import fcntl

    template = Path(os.environ["GANTRAIN_CACHE"]) / "mlflow-template.db"
    with open(template.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.is_file():
            from mlflow.tracking import MlflowClient

            MlflowClient(tracking_uri=f"sqlite:///{template}.new").search_experiments()  # makes and migrates the tables
            os.replace(f"{template}.new", template)

    def store(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(template, folder / "mlflow.db")
        return folder

    return store


# ------------------------------------------------------------------ DataLoader workers left running
# Streamed data (in_memory=false) keeps persistent DataLoader workers after Trainer.fit. When the garbage collector
# later reaches their iterator, its queues are already closed and shutting the workers down waits 5 s per worker,
# in whichever test happens to be running then; shut down explicitly, it takes milliseconds. So the iterators a
# test's body made are shut down when it ends (and `stop_loader_workers()` does it sooner, e.g. per example).
_ITERATORS: list = []  # weak references to the DataLoader iterators with workers, in order of creation
_CALL_START = [0]  # how many of them existed when the running test's body began


def track_data_loaders() -> None:
    from torch.utils.data import DataLoader

    make_iterator = DataLoader.__iter__

    def tracked_iter(self):
        iterator = make_iterator(self)
        if hasattr(iterator, "_shutdown_workers"):  # one with worker processes
            _ITERATORS.append(weakref.ref(iterator))
        return iterator

    DataLoader.__iter__ = tracked_iter


def _stop_loader_workers() -> None:
    """Shut down the workers of every DataLoader iterator the running test's body made."""
    for ref in _ITERATORS[_CALL_START[0]:]:
        iterator = ref()
        if iterator is not None:
            iterator._shutdown_workers()
    del _ITERATORS[_CALL_START[0]:]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    _CALL_START[0] = len(_ITERATORS)  # iterators of fixtures that outlive the test are left alone
    yield
    _stop_loader_workers()


@pytest.fixture(scope="session")
def stop_loader_workers():
    """stop_loader_workers(): shut down the DataLoader workers the running test made so far (e.g. per example)."""
    return _stop_loader_workers


# ------------------------------------------------------------------ the console commands as real processes
# A command run as `subprocess.run(["gantrain", ...])` spends ~5 s importing torch, torchvision, Hydra, scikit-learn
# and TensorBoard before it does anything. Here one server process imports them once and forks a child per command:
# each child is a real process of its own (its pid, exit status, signals, file descriptors, cwd and environment;
# it ends through the normal interpreter exit, atexit handlers included) running exactly what the console script
# or `python ARGV` runs.
SERVER = Path(__file__).parent / "support" / "command_server.py"


class Command:
    """A command started by `cli.start`: the parts of subprocess.Popen the tests use."""

    def __init__(self, server: "CommandServer", pid: int, argv: list[str], out: Path, err: Path):
        self.server, self.pid, self.args, self.out, self.err = server, pid, argv, out, err
        self.returncode: int | None = None

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            code = self.server.request({"wait": self.pid, "timeout": 1e9 if timeout is None else timeout})
            if code is None:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = code
        return self.returncode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.out.read_text(errors="replace"), self.err.read_text(errors="replace")


class CommandServer:
    def __init__(self, folder: Path):
        self.folder, self.count = folder, itertools.count()
        self.log = folder / "server.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen([sys.executable, str(SERVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log, text=True, bufsize=1)

    def request(self, message: dict):
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline()
        if not reply:
            raise RuntimeError(f"the command server ended:\n{self.log.read_text()}")
        return json.loads(reply)

    def start(self, *argv: str, cwd=None, env: dict | None = None) -> Command:
        n = next(self.count)
        out, err = self.folder / f"{n}.out", self.folder / f"{n}.err"
        argv = [str(a) for a in argv]
        pid = self.request({"argv": argv, "cwd": str(cwd or os.getcwd()), "env": dict(os.environ if env is None else env),
                            "stdout": str(out), "stderr": str(err)})
        return Command(self, pid, argv, out, err)

    def run(self, *argv: str, cwd=None, env: dict | None = None, timeout: float = 300,
            check: bool = False) -> subprocess.CompletedProcess:
        command = self.start(*argv, cwd=cwd, env=env)
        try:
            command.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait()
            raise
        out, err = command.communicate()
        done = subprocess.CompletedProcess(command.args, command.returncode, out, err)
        if check and done.returncode != 0:
            raise AssertionError(f"{shlex.join(command.args)} exited {done.returncode}\n{out}\n{err}")
        return done

    def run_ranks(self, world: int, *argv: str, cwd=None, env: dict | None = None,
                  timeout: float = 300) -> subprocess.CompletedProcess:
        """argv on `world` ranks started as torchrun starts its workers (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR
        and MASTER_PORT in each one's environment), but forked from the warm interpreter instead of paying for
        world + 1 fresh ones. The exit status is the first failing rank's; the output is every rank's, in order.
        Real torchrun keeps its own tests (tests/unit/training/test_distributed.py) for what the launcher itself does."""
        with socket.socket() as probe:  # a free port for rank 0's rendezvous store
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        base = dict(os.environ if env is None else env, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                    WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
        ranks = [self.start(*argv, cwd=cwd, env=dict(base, RANK=str(r), LOCAL_RANK=str(r))) for r in range(world)]
        deadline = time.monotonic() + timeout
        try:
            codes = [rank.wait(max(0.0, deadline - time.monotonic())) for rank in ranks]
        except subprocess.TimeoutExpired:
            for rank in ranks:
                if rank.returncode is None:
                    os.killpg(rank.pid, signal.SIGKILL)
                    rank.wait()
            raise
        outputs = [rank.communicate() for rank in ranks]
        return subprocess.CompletedProcess([str(a) for a in argv], next((c for c in codes if c), 0),
                                           "".join(o for o, _ in outputs), "".join(e for _, e in outputs))

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)
        self.process.stdout.close()


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """cli.run(*argv, cwd=None, env=None, timeout=300, check=False) -> subprocess.CompletedProcess (text output), and
    cli.start(*argv, cwd=None, env=None) -> a process with pid, send_signal, kill, wait(timeout) and communicate().
    argv: a console script and its arguments (`gantrain ...`, `gantrain-sample ...`, `gantrain-eval ...`) or what
    would follow `python` (`-c CODE ...`, `-m MODULE ...`, `path/to/script.py ...`). cwd and env default to this
    process's, as with subprocess; env's PYTHONPATH is put on sys.path as the interpreter would."""
    server = CommandServer(tmp_path_factory.mktemp("commands"))
    yield server
    server.close()
