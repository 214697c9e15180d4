"""Throughput of gantrain's Trainer against faithful baselines, side by side in one run.

Usage: python scripts/bench.py [--case dcgan64 mnist] [--steps 20] [--warmup 4] [--data ../shared/data]
       [--images DIR] [--batch-size 128] [--width 64] [--workers 2] [--matmul-size 2048] [--out outputs/bench]

A quick check of the script itself (what the tests run, on a tiny MNIST and a few images, in seconds):
    python scripts/bench.py --steps 1 --warmup 0 --batch-size 8 --width 8 --workers 0 --matmul-size 256 \\
        --data DIR_WITH_MNIST --images IMAGE_FOLDER --out TMP

Cases:
  dcgan64  seed 003 (the PyTorch DCGAN tutorial): DCGAN-64, batch 128, a folder of CelebA-sized JPEGs
           (178x218, made from the CIFAR-10 5k subset, or from noise without it) read by ImageFolder
           with Resize(64)+CenterCrop(64) through a 2-worker DataLoader, vs gantrain `data=celeba`.
  mnist    CS231n's DCGAN (InfoGAN G, classifier D), batch 128, uniform noise: torchvision MNIST with
           ToTensor through a 2-worker DataLoader and CS231n's run_a_gan step, vs gantrain
           `experiment=cs231n_dcgan`.

Both sides run the same networks and batch size; images/s counts real images consumed per second,
end to end (data loading included; gantrain's one-time decode into its cache is reported apart).
GFLOP per image is counted with torch's FlopCounterMode over one training step of each side; the
share of peak is against this machine's measured matmul throughput in the same precision.
"""

import argparse
import copy
import math
import os
import time
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.datasets as dset
import torchvision.transforms as transforms
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- seed 003, verbatim nets
class TutorialGenerator(nn.Module):
    def __init__(self, nz=100, ngf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, x):
        return self.main(x)


class TutorialDiscriminator(nn.Module):
    def __init__(self, ndf=64, nc=3):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, x):
        return self.main(x)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        nn.init.normal_(m.weight.data, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        nn.init.normal_(m.weight.data, 1.0, 0.02)
        nn.init.constant_(m.bias.data, 0)


def tutorial_steps(root: Path, batch_size: int, workers: int = 2, width: int = 64):
    """The tutorial's loop body, one iteration per next(): ImageFolder + 2 workers + BCELoss on sigmoid."""
    dataset = dset.ImageFolder(root=str(root), transform=transforms.Compose([
        transforms.Resize(64), transforms.CenterCrop(64), transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ]))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)
    netG, netD = TutorialGenerator(ngf=width), TutorialDiscriminator(ndf=width)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=0.0002, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=0.0002, betas=(0.5, 0.999))
    while True:
        for data in dataloader:
            netD.zero_grad()
            real_cpu = data[0]
            b_size = real_cpu.size(0)
            label = torch.full((b_size,), 1.0, dtype=torch.float)
            output = netD(real_cpu).view(-1)
            errD_real = criterion(output, label)
            errD_real.backward()
            noise = torch.randn(b_size, 100, 1, 1)
            fake = netG(noise)
            label.fill_(0.0)
            output = netD(fake.detach()).view(-1)
            errD_fake = criterion(output, label)
            errD_fake.backward()
            optimizerD.step()
            netG.zero_grad()
            label.fill_(1.0)
            output = netD(fake).view(-1)
            errG = criterion(output, label)
            errG.backward()
            optimizerG.step()
            yield b_size


# ----------------------------------------------------------------------------- CS231n, verbatim nets
def cs231n_nets(noise_dim=96):
    D = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2, 2),
        nn.Conv2d(32, 64, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(4 * 4 * 64, 4 * 4 * 64), nn.LeakyReLU(0.01), nn.Linear(4 * 4 * 64, 1),
    )
    G = nn.Sequential(
        nn.Linear(noise_dim, 1024), nn.ReLU(), nn.BatchNorm1d(1024),
        nn.Linear(1024, 7 * 7 * 128), nn.ReLU(), nn.BatchNorm1d(7 * 7 * 128),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(), nn.BatchNorm2d(64),
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(), nn.Flatten(),
    )

    def init(m):
        if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight.data)

    D.apply(init)
    G.apply(init)
    return D, G


def bce_loss(input, target):
    neg_abs = -input.abs()
    return (input.clamp(min=0) - input * target + (1 + neg_abs.exp()).log()).mean()


def cs231n_steps(root: Path, batch_size: int, workers: int = 2):
    """CS231n run_a_gan: MNIST via ToTensor and a 2-worker DataLoader over the first 50,000 images."""
    mnist = dset.MNIST(str(root), train=True, download=False, transform=transforms.ToTensor())
    if len(mnist) < batch_size:
        raise SystemExit(f"bench: {len(mnist)} MNIST images under {root}, fewer than one batch of {batch_size}")
    loader = torch.utils.data.DataLoader(mnist, batch_size=batch_size, num_workers=workers,
                                         sampler=torch.utils.data.SubsetRandomSampler(range(min(50000, len(mnist)))))
    D, G = cs231n_nets()
    D_solver = torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.999))
    G_solver = torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.999))
    while True:
        for x, _ in loader:
            if len(x) != batch_size:
                continue
            D_solver.zero_grad()
            real_data = 2 * x.view(batch_size, -1) - 1
            logits_real = D(real_data)
            g_fake_seed = torch.rand(batch_size, 96) * 2 - 1
            fake_images = G(g_fake_seed).detach()
            logits_fake = D(fake_images.view(batch_size, 784))
            d_total_error = bce_loss(logits_real, torch.ones_like(logits_real)) + bce_loss(logits_fake, torch.zeros_like(logits_fake))
            d_total_error.backward()
            D_solver.step()
            G_solver.zero_grad()
            g_fake_seed = torch.rand(batch_size, 96) * 2 - 1
            fake_images = G(g_fake_seed)
            gen_logits_fake = D(fake_images.view(batch_size, 784))
            g_error = bce_loss(gen_logits_fake, torch.ones_like(gen_logits_fake))
            g_error.backward()
            G_solver.step()
            yield batch_size


# ----------------------------------------------------------------------------- gantrain
def compose_config(*overrides: str):
    """The real configs, as `gantrain <overrides>` composes them."""
    from hydra import compose, initialize_config_module

    import gantrain.cli  # noqa: F401  (registers gantrain's config resolvers and schemas, as the command does)

    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return compose("config", overrides=list(overrides))


def gantrain_config(overrides: list[str]):
    """One gantrain row's config, composed once for both of its measurements (FLOPs and speed)."""
    return compose_config(*overrides, "trainer.progress=false", "trainer.sample_every=1000000",
                          "trainer.checkpoint_every=1000000", "trainer.log_every=10")


def gantrain_steps(cfg, run_dir: Path):
    """gantrain's own loop body (Trainer.train_step + periodic logging), one step per next()."""
    from omegaconf import OmegaConf

    from gantrain.config.build import build_trainer

    cfg = copy.deepcopy(cfg)  # each measurement builds from a config of its own
    started = time.perf_counter()
    trainer = build_trainer(cfg, run_dir, meta={"config": OmegaConf.to_container(cfg, resolve=True)})
    trainer.begin()
    print(f"    (gantrain set-up incl. data decode/cache: {time.perf_counter() - started:.1f} s)", flush=True)

    class Bar:
        def set_postfix(self, **kwargs):
            pass

    while True:
        trainer.train_step()
        trainer.periodic(Bar())
        yield cfg.trainer.batch_size * cfg.trainer.n_critic


# ----------------------------------------------------------------------------- measuring
def images_per_second(steps, warmup: int, measured: int) -> float:
    for _ in range(warmup):
        next(steps)
    start, images = time.perf_counter(), 0
    for _ in range(measured):
        images += next(steps)
    return images / (time.perf_counter() - start)


def flops_per_image(steps, batch_size: int) -> float:
    next(steps)  # the first step may build lazy state
    counter = FlopCounterMode(display=False)
    with counter:
        next(steps)
    return counter.get_total_flops() / batch_size


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def make_celeba_like(out: Path, source: Path, count: int) -> Path:
    """CelebA-sized (178x218) JPEGs in img_align_celeba/, from CIFAR-10 images (or noise)."""
    folder = out / "img_align_celeba"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) >= count:
        return out
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = (p for p in source.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"}) if source.is_dir() else ()
    sources = sorted(images)[:count]
    rng = np.random.default_rng(0)
    for i in range(count):
        if sources:
            img = Image.open(sources[i % len(sources)]).convert("RGB").resize((178, 218), Image.BICUBIC)
        else:
            img = Image.fromarray(rng.integers(0, 256, (218, 178, 3), dtype=np.uint8))
        img.save(folder / f"{i:06d}.jpg", quality=95)
    return out


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", nargs="*", default=["dcgan64", "mnist"], choices=["dcgan64", "mnist"])
    parser.add_argument("--steps", type=int, default=20, help="measured steps per row")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"), help="the folder holding MNIST/raw")
    parser.add_argument("--images", default=None,
                        help="images to make the CelebA-sized JPEGs from (default: DATA/cifar10-5k; noise without it)")
    parser.add_argument("--batch-size", type=int, default=128, help="both sides (the recipes' 128 by default)")
    parser.add_argument("--width", type=int, default=64, help="dcgan64: ngf = ndf of both sides (the tutorial's 64)")
    parser.add_argument("--workers", type=int, default=2, help="the baselines' DataLoader workers")
    parser.add_argument("--matmul-size", type=int, default=2048, help="n of the n x n matmul that measures the peak")
    parser.add_argument("--out", default=str(REPO / "outputs" / "bench"))
    return parser


def main() -> None:
    args = build_parser().parse_args()
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    images = Path(args.images).resolve() if args.images else data / "cifar10-5k"
    batch = args.batch_size
    peak = {"fp32": matmul_peak(torch.float32, args.matmul_size), "bf16": matmul_peak(torch.bfloat16, args.matmul_size)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores; "
          f"matmul peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", flush=True)

    rows = []
    for case in args.case:
        if case == "dcgan64":
            root = make_celeba_like(out / "celeba_like", images, batch * (args.warmup + args.steps + 2))
            common = ["experiment=dcgan_celeba", f"data.root={root}", "trainer.device=cpu", f"trainer.batch_size={batch}",
                      f"model.generator.width={args.width}", f"model.discriminator.width={args.width}"]
            runs = [("baseline: seed 003 loop", "fp32", lambda: tutorial_steps(root, batch, args.workers, args.width))]
        else:
            root = data
            common = ["experiment=cs231n_dcgan", f"data.root={root}", "trainer.device=cpu", f"trainer.batch_size={batch}"]
            runs = [("baseline: CS231n run_a_gan", "fp32", lambda: cs231n_steps(root, batch, args.workers))]
        variants = [("gantrain", "fp32", []), ("gantrain channels_last", "fp32", ["trainer.channels_last=true"]),
                    ("gantrain", "bf16", ["trainer.amp=bf16"]),
                    ("gantrain channels_last", "bf16", ["trainer.amp=bf16", "trainer.channels_last=true"])]
        for name, precision, extra in variants:
            cfg = gantrain_config(common + extra)
            runs.append((name, precision, lambda cfg=cfg, name=name, precision=precision: gantrain_steps(
                cfg, out / "runs" / case / f"{name.replace(' ', '_')}_{precision}")))
        baseline = None
        for name, precision, make in runs:
            print(f"  {case}: {name} ({precision}) ...", flush=True)
            gflop = flops_per_image(make(), batch) / 1e9
            speed = images_per_second(make(), args.warmup, args.steps)
            baseline = baseline or speed
            rows.append((case, name, precision, speed, speed / baseline, gflop, speed * gflop, speed * gflop / peak[precision]))

    print()
    header = f"{'case':8} {'implementation':28} {'prec':5} {'images/s':>9} {'vs base':>8} {'GFLOP/img':>10} {'GFLOP/s':>8} {'of peak':>8}"
    print(header)
    print("-" * len(header))
    for case, name, precision, speed, ratio, gflop, achieved, share in rows:
        print(f"{case:8} {name:28} {precision:5} {speed:9.1f} {ratio:7.2f}x {gflop:10.3f} {achieved:8.1f} {share:7.0%}")


if __name__ == "__main__":
    main()
