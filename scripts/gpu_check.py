"""Run gantrain's CUDA-only paths for a few steps each and print a pass/fail table with images/s and peak memory.

Usage: python scripts/gpu_check.py [--steps 10] [--only NAME ...] [--out DIR]

Without a CUDA GPU it says so and exits 0. With one, each row below trains a small model on the bundled
digits (no download, nothing read from outside --out) and checks what the CPU tests can only imitate:

  fp16 + GP, fp16 + R1   trainer.amp=fp16 with a GradScaler and scaled input-gradient penalties; and whether
                         R1 on a BatchNorm critic gives NaN gradients on CUDA too (gantrain refuses it)
  bf16, channels_last, compile, cudnn_benchmark=false (the other rows use the default, true)
  in-memory data         on the GPU, and kept in pinned host memory; streamed data through DataLoader
                         workers; all three under torch.cuda.set_sync_debug_mode("error") (no sync per step)
  cyclegan resumed       2 steps on the CPU, resumed onto CUDA
  eval mid-run           an evaluation leaves the CUDA random stream as it was, and training goes on
  ddp                    torchrun with NCCL on every visible GPU (2 or more): a run, sync_bn, a NaN on
                         rank 1 under nan_policy=skip and =stop; and gloo with trainer.device=cpu here
  bench                  seed 003's DCGAN loop (the PyTorch tutorial) against gantrain, same nets, on the GPU
  stylegan2              experiment=stylegan2_digits with R1 and path length: fp16 on its top 2 resolutions (checked
                         to run in fp16), fp32, compile (without the double-backward regularisers), DDP
  stylegan2_ada_256      the paper256 recipe's throughput and peak memory: batch 64 of 256x256 RGB images (digits
                         written as PNG files under --out), fp16 on the top 4 resolutions as official

The exit status is 1 when a row failed. `--nan-on-rank R --nan-at-step S -- OVERRIDES` is the entry the ddp
rows (and tests/unit/training/test_gpu_ddp.py, with gloo on CPUs) start under torchrun: `gantrain OVERRIDES` whose D loss
is NaN on rank R at step S, its gradients left finite.
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from gantrain.errors import first_line

SCRIPTS = Path(__file__).resolve().parent
SMALL = ["trainer=debug", "trainer.device=cuda", "trainer.batch_size=64", "model.generator.width=32",
         "model.discriminator.width=32", "trainer.log_every=1000", "trainer.sample_every=1000",
         "trainer.checkpoint_every=1000", "trainer.grid_size=16"]
WARMUP = 8  # steps before the timed ones: fp16 rows need a few for the GradScaler to settle its scale
# StyleGAN2 on the digits with every regulariser on (lazy R1 every 16 steps, path length every 4, style mixing)
STYLEGAN2 = ["experiment=stylegan2_digits", "trainer.device=cuda", "trainer.batch_size=64", "trainer.log_every=1000",
             "trainer.sample_every=1000", "trainer.checkpoint_every=1000", "trainer.grid_size=16",
             "trainer.progress=false", "loss.r1=0.01", "model.pl_weight=2", "model.style_mixing=0.9"]


def merged(*lists: list[str]) -> list[str]:
    """Override lists joined; a key set again later replaces the earlier value (Hydra refuses a key twice)."""
    out: dict[str, str] = {}
    for overrides in lists:
        for item in overrides:
            out[item.split("=", 1)[0]] = item
    return list(out.values())


# ----------------------------------------------------------------------------- running a few steps
def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import gantrain.cli  # noqa: F401  (registers the resolvers and the trainer schema)

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


@contextlib.contextmanager
def sync_debug(mode: str):
    """torch.cuda.set_sync_debug_mode: "error" makes any host-device sync raise."""
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def measure(trainer, steps: int, no_sync: bool = False) -> dict:
    """WARMUP steps, then `steps` timed ones; images/s and peak memory of the timed ones."""
    for _ in range(WARMUP):
        trainer.train_step()
    trainer.meter.read()  # the statistics of the timed steps only (the GradScaler settles its scale first)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with sync_debug("error" if no_sync else "default"):
        for _ in range(steps):
            trainer.train_step()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    images = steps * trainer.settings.batch_size * trainer.settings.n_critic
    bad = [n for n, p in trainer.system.named_parameters() if not torch.isfinite(p).all()]
    if bad or trainer.watch.first_bad_step() is not None:
        raise RuntimeError(f"non-finite weights or loss ({', '.join(bad[:3]) or 'loss'})")
    return {"images_per_s": images / seconds, "peak_mb": torch.cuda.max_memory_allocated() / 2**20}


def train(overrides: list[str], out: Path, steps: int, prepare=None, no_sync: bool = False, base=SMALL) -> dict:
    from gantrain.config.build import build_trainer

    cfg = compose(merged(base, overrides, [f"trainer.max_steps={WARMUP + steps}"]))
    trainer = build_trainer(cfg, out)
    if prepare:
        prepare(trainer)
    trainer.begin()
    try:
        result = measure(trainer, steps, no_sync)
        stats = trainer.meter.read()
        penalties = {k: v for k, v in stats.items() if k.endswith("_penalty")}
        for key, value in penalties.items():
            if value == 0:
                raise RuntimeError(f"{key}=0: the penalty vanished (fp16 underflow?)")
        result["note"] = "  ".join(f"{k.split('/')[-1]} {v:.3g}" for k, v in penalties.items())
        return result
    finally:
        trainer.logger.close()


# ----------------------------------------------------------------------------- the checks
def streamed(trainer) -> None:
    """The trainer's in-memory digits replaced by the same images streamed by two DataLoader workers."""
    from gantrain.data.base import StreamData
    from gantrain.data.torchvision_sets import TensorImages

    data = trainer.data
    stream = StreamData("digits", TensorImages(data.x, data.labels), data.shape, data.num_classes, hflip=True, workers=2)
    trainer.batches = stream.batches(trainer.settings.batch_size, trainer.seed, trainer.device)


@contextlib.contextmanager
def data_kept_on_host():
    """In-memory data treated as too large for the GPU: it stays in host memory (MemoryBatches' other path)."""
    from gantrain.data import batches

    original = batches.fits_on_device
    batches.fits_on_device = lambda nbytes, device: False
    try:
        yield
    finally:
        batches.fits_on_device = original


def host_memory(overrides, out, steps):
    with data_kept_on_host():
        return train(overrides, out, steps, no_sync=True)


def make_unpaired(root: Path, per_domain: int = 12) -> Path:
    """Digits (A) and inverted digits (B) as PNG files in the CycleGAN layout."""
    from PIL import Image

    from gantrain.data.digits import digits

    images = digits(image_size=36).x[:, 0].numpy()
    for k, folder in enumerate(("trainA", "trainB", "testA", "testB")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(per_domain):
            image = images[k * per_domain + i]
            Image.fromarray(255 - image if folder.endswith("B") else image).save(root / folder / f"{i:03d}.png")
    return root


def cyclegan_resumed(overrides, out, steps):
    """Two CycleGAN steps on the CPU, then the run resumed on CUDA: every tensor must follow."""
    from gantrain.config.build import build_trainer

    root = make_unpaired(out / "unpaired")
    common = ["experiment=cyclegan", "trainer=debug", f"data.root={root}", "data.channels=1", "data.workers=0",
              "trainer.batch_size=4"]
    build_trainer(compose(common + ["trainer.device=cpu", "trainer.max_steps=2", "trainer.checkpoint_every=2"]),
                  out / "run").fit()
    cfg = compose(common + ["trainer.device=cuda", f"trainer.resume={out / 'run'}",
                            f"trainer.max_steps={2 + WARMUP + steps}", "trainer.checkpoint_every=1000"])
    trainer = build_trainer(cfg, out / "run")
    trainer.begin()
    try:
        result = measure(trainer, steps)
    finally:
        trainer.logger.close()
    elsewhere = [n for n, t in trainer.system.state_dict().items() if torch.is_tensor(t) and t.device.type != "cuda"]
    elsewhere += [f"pools.{k}" for k, pool in trainer.system.pools.items() if any(x.device.type != "cuda" for x in pool.images)]
    if elsewhere:
        raise RuntimeError(f"not on the GPU after the resume: {', '.join(elsewhere[:3])}")
    return result


def eval_mid_run(overrides, out, steps):
    """trainer.evaluate() between steps: the CUDA generator's state is unchanged, and training continues."""
    from gantrain.config.build import build_trainer

    metrics = ["trainer.eval_every=1000", "metrics.num_samples=300", "metrics.real_samples=600", "metrics.metrics=[fid,kid]",
               "metrics.kid_subsets=10", "metrics.kid_subset_size=100", "metrics.classifier_epochs=1"]
    cfg = compose(merged(SMALL, metrics, [f"trainer.max_steps={2 * WARMUP + steps}"]))
    trainer = build_trainer(cfg, out)
    trainer.begin()
    try:
        for _ in range(WARMUP):
            trainer.train_step()
        before = torch.cuda.get_rng_state(trainer.device)
        trainer.evaluate()
        if not torch.equal(before, torch.cuda.get_rng_state(trainer.device)):
            raise RuntimeError("the evaluation changed the training's CUDA random stream")
        result = measure(trainer, steps)
    finally:
        trainer.logger.close()
    result["note"] = "CUDA stream untouched"
    return result


def bench_seed003(overrides, out, steps, batch: int = 128):
    """Seed 003's loop body (the PyTorch DCGAN tutorial, scripts/bench.py's nets) on one fixed batch on the GPU."""
    sys.path.insert(0, str(SCRIPTS))
    from bench import TutorialDiscriminator, TutorialGenerator, weights_init

    from gantrain.data.digits import digits
    from gantrain.data.pixels import to_model_range

    device = torch.device("cuda")
    real = to_model_range(digits(image_size=64).x[:batch]).to(device)
    net_g, net_d = TutorialGenerator(nc=1).to(device), TutorialDiscriminator(nc=1).to(device)
    net_g.apply(weights_init)
    net_d.apply(weights_init)
    criterion = torch.nn.BCELoss()
    opt_d = torch.optim.Adam(net_d.parameters(), lr=0.0002, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(net_g.parameters(), lr=0.0002, betas=(0.5, 0.999))
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, device=device)

    def step():
        net_d.zero_grad()
        criterion(net_d(real).view(-1), ones).backward()
        fake = net_g(torch.randn(batch, 100, 1, 1, device=device))
        criterion(net_d(fake.detach()).view(-1), zeros).backward()
        opt_d.step()
        net_g.zero_grad()
        criterion(net_d(fake).view(-1), ones).backward()
        opt_g.step()

    for _ in range(WARMUP):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return {"images_per_s": steps * batch / (time.perf_counter() - start),
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20, "note": "one fixed batch: no data loading"}


def fp16_r1_batchnorm(overrides, out, steps):
    """gantrain refuses fp16 with R1 on a BatchNorm critic: under CPU autocast BatchNorm's double backward gives NaN
    gradients. Is it so on CUDA too? One D loss, at loss scales 1 and 1024; the note says whether to keep the refusal."""
    from gantrain.config.build import build_data, build_system

    cfg = compose(merged(SMALL, ["loss.r1=10"]))
    data = build_data(cfg)
    system = build_system(cfg, data.shape, data.num_classes).cuda()
    batch = next(data.batches(64, 0, torch.device("cuda")))
    nan_at = []
    for scale in (1.0, 1024.0):
        system.zero_grad(set_to_none=True)
        system.loss_scale = torch.tensor(scale, device="cuda")
        with torch.autocast("cuda", torch.float16):
            loss, _ = system.d_loss(batch)
        loss.backward()
        if any(p.grad is not None and not torch.isfinite(p.grad).all() for p in system.D.parameters()):
            nan_at.append(scale)
    return {"note": f"NaN gradients at scale {nan_at}: keep the refusal" if nan_at else
            "finite gradients on CUDA: the refusal (gantrain/config/build.py) could be lifted for CUDA"}


def stylegan2(overrides, out, steps):
    """StyleGAN2 steps; with num_fp16_res > 0, its top synthesis block must have run in fp16 (CUDA's reduced dtype)."""
    seen = set()

    def watch(trainer):
        block = trainer.system.G.synthesis.blocks[-1]
        block.conv1.register_forward_hook(lambda module, args, output: seen.add(output.dtype))

    result = train(overrides, out, steps, prepare=watch, base=STYLEGAN2)
    reduced = any(o.startswith("model.generator.num_fp16_res=") and not o.endswith("=0") for o in overrides)
    if reduced != (torch.float16 in seen):
        raise RuntimeError(f"the top synthesis block ran in {sorted(map(str, seen))}")
    result["note"] = f"top block in {', '.join(sorted(str(d).removeprefix('torch.') for d in seen))}  {result['note']}"
    return result


def write_images(root: Path, n: int = 64, size: int = 256) -> Path:
    """n RGB PNG files of size x size (the bundled digits, upscaled and tinted): a folder for data=folder."""
    from PIL import Image

    from gantrain.data.digits import digits

    root.mkdir(parents=True, exist_ok=True)
    images = digits(image_size=size).x[:n, 0].numpy()
    for i, image in enumerate(images):
        Image.fromarray(image).convert("RGB").save(root / f"{i:03d}.png")
    return root


def stylegan2_ada_256(overrides, out, steps):
    """experiment=stylegan2_ada_256 as shipped (batch 64, paper256 networks, fp16 on the top 4 resolutions)."""
    root = write_images(out / "images")
    base = ["experiment=stylegan2_ada_256", f"data.root={root}", "trainer.device=cuda", "trainer.log_every=1000",
            "trainer.sample_every=1000", "trainer.checkpoint_every=1000", "trainer.grid_size=16",
            "trainer.progress=false"]
    return train(overrides, out, steps, base=base)


BENCH_GANTRAIN = ["data.image_size=64", "trainer.batch_size=128", "model.generator.width=64", "model.discriminator.width=64"]


def in_process_checks() -> list[tuple[str, list[str], object]]:
    """(row name, overrides, how to run it) for the checks that run in this process."""
    plain = lambda overrides, out, steps: train(overrides, out, steps, no_sync=True)  # noqa: E731
    stream = lambda overrides, out, steps: train(overrides, out, steps, prepare=streamed, no_sync=True)  # noqa: E731
    default = lambda overrides, out, steps: train(overrides, out, steps)  # noqa: E731
    return [
        ("fp32, in-memory data on the GPU", [], plain),
        ("in-memory data kept in host memory", [], host_memory),
        ("streamed data (2 workers)", [], stream),
        ("fp16 + GP (wgan_gp)", ["trainer.amp=fp16", "loss=wgan_gp", "model.discriminator.norm=layer"], default),
        ("fp16 + R1", ["trainer.amp=fp16", "loss.r1=10", "model.discriminator.norm=layer"], default),
        ("fp16 + R1 on a BatchNorm critic (refused)", [], fp16_r1_batchnorm),
        ("bf16", ["trainer.amp=bf16"], default),
        ("channels_last", ["trainer.channels_last=true"], default),
        ("compile", ["trainer.compile=true"], default),
        ("cudnn_benchmark=false", ["trainer.cudnn_benchmark=false"], default),
        ("cyclegan resumed from CPU onto CUDA", [], cyclegan_resumed),
        ("evaluation mid-run, then training", [], eval_mid_run),
        ("bench: seed 003 DCGAN loop, 64px", [], bench_seed003),
        ("bench: gantrain dcgan, 64px", BENCH_GANTRAIN, default),
        ("stylegan2: fp16 on the top 2 resolutions", ["model.generator.num_fp16_res=2",
                                                      "model.discriminator.num_fp16_res=2"], stylegan2),
        ("stylegan2: fp32", [], stylegan2),
        ("stylegan2: compile (no R1, no path length)", ["trainer.compile=true", "loss.r1=0", "model.pl_weight=0"],
         stylegan2),
        ("stylegan2_ada_256: throughput, batch 64", [], stylegan2_ada_256),
    ]


# ----------------------------------------------------------------------------- torchrun
def torchrun(nproc: int, args: list[str], out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    command = ["torchrun", "--standalone", f"--nproc_per_node={nproc}", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=out, env=env, capture_output=True, text=True, timeout=timeout)


def nan_run(nproc: int, policy: str, device: str, out: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """A torchrun of `nproc` ranks whose rank 1 sees a NaN D loss at step 1 (see --nan-on-rank)."""
    overrides = merged(SMALL, [f"trainer.device={device}", "trainer.max_steps=4", "trainer.log_every=2",
                               "trainer.checkpoint_every=2", f"trainer.nan_policy={policy}", f"hydra.run.dir={out / 'run'}"])
    return torchrun(nproc, [str(Path(__file__).resolve()), "--nan-on-rank", "1", "--nan-at-step", "1", "--", *overrides],
                    out, timeout)


def ddp_checks(gpus: int) -> list[tuple[str, object]]:
    """(row name, function(out) -> note) for the torchrun rows; those needing 2 GPUs only when there are."""
    def plain(out, extra=(), base=SMALL):
        overrides = merged(base, ["trainer.max_steps=6", *extra, f"hydra.run.dir={out / 'run'}"])
        proc = torchrun(gpus, ["-m", "gantrain", *overrides], out)
        expect(proc.returncode == 0 and f"weights identical on {gpus} ranks" in proc.stderr + proc.stdout, proc)
        return ""

    def nan_skip(out):
        proc = nan_run(gpus, "skip", "cuda", out)
        expect(proc.returncode == 0 and f"weights identical on {gpus} ranks" in proc.stderr + proc.stdout, proc)
        return "all ranks skipped together"

    def nan_stop(out):
        proc = nan_run(gpus, "stop", "cuda", out)
        said = (proc.stderr + proc.stdout).count("the loss became NaN or infinite at step")
        expect(proc.returncode != 0 and said >= gpus and not (out / "run" / "checkpoints" / "step_0000002.pt").exists(), proc)
        return "every rank stopped, no checkpoint of it"

    def gloo_here(out):
        overrides = merged(SMALL, ["trainer.device=cpu", "trainer.batch_size=16", "trainer.max_steps=4",
                                   f"hydra.run.dir={out / 'run'}"])
        proc = torchrun(2, ["-m", "gantrain", *overrides], out)
        expect(proc.returncode == 0 and "weights identical on 2 ranks" in proc.stderr + proc.stdout, proc)
        return "gloo for CPU tensors on a GPU node"

    rows = [("ddp: 2 CPU ranks (gloo) on this GPU node", gloo_here)]
    if gpus >= 2:
        rows += [(f"ddp: nccl on {gpus} GPUs", plain),
                 (f"ddp: nccl on {gpus} GPUs, sync_bn", lambda out: plain(out, ["trainer.sync_bn=true"])),
                 (f"ddp: stylegan2 on {gpus} GPUs (lazy steps every 2)",
                  lambda out: plain(out, ["loss.r1_every=2", "model.pl_every=2"], STYLEGAN2)),
                 ("ddp: NaN on rank 1, nan_policy=skip", nan_skip),
                 ("ddp: NaN on rank 1, nan_policy=stop", nan_stop)]
    return rows


def expect(ok: bool, proc: subprocess.CompletedProcess) -> None:
    if not ok:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"exit {proc.returncode}: {' | '.join(tail)}")


def train_with_nan(rank: int, step: int, overrides: list[str]) -> None:
    """`gantrain OVERRIDES` (under torchrun) whose D loss is NaN on one rank at one step; its gradients stay
    finite, so only the ranks' own non-finite checks can notice, which must agree."""
    from gantrain import cli
    from gantrain.systems.gan import GAN
    from gantrain.training import distributed

    d_loss = GAN.d_loss

    def poisoned(self, batch):
        loss, stats = d_loss(self, batch)
        if distributed.rank() == rank and self.step == step:
            loss = loss + float("nan")
        return loss, stats

    GAN.d_loss = poisoned
    sys.argv = ["gantrain", *overrides]
    cli.train()


# ----------------------------------------------------------------------------- the table
def run_row(name: str, check, out: Path) -> tuple:
    torch.cuda.empty_cache()
    started = time.perf_counter()
    try:
        result = check(out)
        if isinstance(result, str):
            result = {"note": result}
        return name, "pass", result.get("images_per_s"), result.get("peak_mb"), result.get("note", ""), time.perf_counter() - started
    except Exception as err:  # a failed check is a row of the table, not the end of the run
        (out / "error.txt").write_text(traceback.format_exc())
        first = first_line(err)
        return name, "FAIL", None, None, f"{type(err).__name__}: {first[:150]} (trace: {out / 'error.txt'})", time.perf_counter() - started


def print_table(rows: list[tuple]) -> None:
    header = f"{'check':44} {'result':6} {'images/s':>9} {'peak MB':>8} {'s':>5}  note"
    print("\n" + header + "\n" + "-" * len(header))
    for name, result, speed, peak, note, seconds in rows:
        speed = f"{speed:9.0f}" if speed else f"{'-':>9}"
        peak = f"{peak:8.0f}" if peak else f"{'-':>8}"
        print(f"{name:44} {result:6} {speed} {peak} {seconds:5.0f}  {note}")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")[:60]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (after 8 warm-up steps)")
    parser.add_argument("--only", nargs="*", default=None, help="rows whose name contains one of these words")
    parser.add_argument("--out", default=None, help="where runs go (default: a temporary folder)")
    parser.add_argument("--nan-on-rank", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--nan-at-step", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.nan_on_rank is not None:
        train_with_nan(args.nan_on_rank, args.nan_at_step, args.overrides)
        return 0
    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU found (torch {torch.__version__}, built for CUDA {torch.version.cuda}): "
              f"nothing to check here")
        return 0
    out = Path(args.out or tempfile.mkdtemp(prefix="gantrain-gpu-check-")).resolve()
    os.environ.setdefault("GANTRAIN_CACHE", str(out / "cache"))  # the evaluation classifier is trained here
    gpus = torch.cuda.device_count()
    print(f"gpu_check: {gpus} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}; "
          f"runs in {out}", flush=True)
    checks = [(name, lambda o, overrides=overrides, run=run: run(overrides, o, args.steps))
              for name, overrides, run in in_process_checks()] + ddp_checks(gpus)
    rows = []
    for name, check in checks:
        if args.only and not any(word in name for word in args.only):
            continue
        folder = out / slug(name)
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(run_row(name, check, folder))
        print(f"  {rows[-1][1]:4}  {name} ({rows[-1][5]:.0f} s)", flush=True)
    print_table(rows)
    return 1 if any(row[1] == "FAIL" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
