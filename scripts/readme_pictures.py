"""Re-make the README's gallery: train each seed recipe here and copy its final grid to docs/gallery/.

Usage: python scripts/readme_pictures.py [name ...] [--data ../shared/data] [--steps N --out DIR]
Runs go to outputs/readme/<name>; the wall time of each is printed. CelebA and the full CIFAR-10
are not on our machines, so their recipes run on the 5,000-image CIFAR-10 subset (class folders).

A quick check of every recipe (what the tests run, on tiny data): `--steps 2 --out DIR` runs each one
for 2 steps of trainer=debug and writes the runs and pictures under DIR, leaving docs/ alone.
"""

import argparse
import shutil
import subprocess
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def recipes(data: Path) -> dict[str, list[str]]:
    mnist = [f"data.root={data}"]
    cifar5k = ["data=folder", f"data.root={data / 'cifar10-5k'}"]
    return {
        "default": [],
        "cs231n_vanilla": ["experiment=cs231n_vanilla", *mnist],
        "cs231n_lsgan": ["experiment=cs231n_lsgan", *mnist],
        "cs231n_dcgan": ["experiment=cs231n_dcgan", *mnist],
        "dcgan_mnist": ["experiment=dcgan_mnist", *mnist, "trainer.max_steps=1200"],
        "mlp_cifar10": ["experiment=mlp_cifar10", *cifar5k, "data.image_size=32", "trainer.max_steps=4000"],
        "toy_gaussian": ["experiment=toy_gaussian"],
        "dcgan_celeba": ["experiment=dcgan_celeba", *cifar5k, "trainer.max_steps=800",
                         "trainer.batch_size=64", "trainer.amp=bf16"],
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart from running it: the docs test parses the studies' commands with it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--steps", type=int, default=None,
                        help="a quick check: N steps of trainer=debug per recipe instead of the recipe's length")
    parser.add_argument("--out", default=None, help="runs in OUT/runs/<name>, pictures in OUT (default: outputs/readme, docs/gallery)")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    table = recipes(Path(args.data).resolve())
    unknown = sorted(set(args.names) - set(table))
    if unknown:
        parser.error(f"unknown recipe {', '.join(unknown)}; choose from {', '.join(table)}")
    out = Path(args.out).resolve() if args.out else None
    runs, pictures = (out / "runs", out) if out else (REPO / "outputs" / "readme", REPO / "docs" / "gallery")
    quick = [] if args.steps is None else ["trainer=debug", f"trainer.max_steps={args.steps}"]
    for name in args.names or list(table):
        run_dir = runs / name
        shutil.rmtree(run_dir, ignore_errors=True)
        recipe = [a for a in table[name] if not (quick and a.startswith(("trainer.max_steps=", "trainer.batch_size=")))]
        command = ["gantrain", *recipe, *quick, "trainer.progress=false", f"hydra.run.dir={run_dir}"]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True)
        minutes = (time.perf_counter() - start) / 60
        picture = Image.open(run_dir / "final.png").convert("RGB")
        if picture.width > 300:  # keep docs/ small: a few hundred KB for all pictures
            picture = picture.resize((300, round(300 * picture.height / picture.width)), Image.LANCZOS)
        pictures.mkdir(parents=True, exist_ok=True)
        picture = picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        picture.save(pictures / f"{name}.png", optimize=True)  # a 256-colour palette keeps it small
        print(f"{name}: {minutes:.1f} min  {' '.join(command[:-1])}", flush=True)


if __name__ == "__main__":
    main()
