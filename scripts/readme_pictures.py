"""Re-make the README's pictures: train each seed recipe here and copy its final grid to docs/.

Usage: python scripts/readme_pictures.py [name ...] [--data ../shared/data]
Runs go to outputs/readme/<name>; the wall time of each is printed. CelebA and the full CIFAR-10
are not on our machines, so their recipes run on the 5,000-image CIFAR-10 subset (class folders).
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
        "dcgan_celeba": ["experiment=dcgan_celeba", *cifar5k, "data.image_size=64", "trainer.max_steps=800",
                         "trainer.batch_size=64", "trainer.amp=bf16"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    args = parser.parse_args()
    table = recipes(Path(args.data).resolve())
    for name in args.names or list(table):
        run_dir = REPO / "outputs" / "readme" / name
        shutil.rmtree(run_dir, ignore_errors=True)
        command = ["gantrain", *table[name], "trainer.progress=false", f"hydra.run.dir={run_dir}"]
        start = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True)
        minutes = (time.perf_counter() - start) / 60
        picture = Image.open(run_dir / "final.png").convert("RGB")
        if picture.width > 300:  # keep docs/ small: a few hundred KB for all pictures
            picture = picture.resize((300, round(300 * picture.height / picture.width)), Image.LANCZOS)
        (REPO / "docs").mkdir(exist_ok=True)
        picture = picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        picture.save(REPO / "docs" / f"{name}.png", optimize=True)  # a 256-colour palette keeps it small
        print(f"{name}: {minutes:.1f} min  {' '.join(command[:-1])}", flush=True)


if __name__ == "__main__":
    main()
