"""An unpaired toy set for CycleGAN from MNIST: domain A = digits, domain B = colour-inverted digits
(different images, so no pair is shared), in the trainA/ trainB/ testA/ testB/ layout. No download.

    python scripts/make_unpaired_demo.py --mnist ../shared/data --out data/mnist2inverted
    gantrain experiment=cyclegan data.root=data/mnist2inverted data.image_size=32 data.channels=1 \\
        model.generator.n_blocks=6 model.generator.width=32 model.discriminator.width=32 \\
        trainer.batch_size=4 trainer.max_steps=600 trainer.decay_start=300 trainer.sample_every=200
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from torchvision.datasets import MNIST


def write(images: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", default="../shared/data", help="the folder holding MNIST/raw")
    parser.add_argument("--out", default="data/mnist2inverted")
    parser.add_argument("--train", type=int, default=2000, help="images per training domain")
    parser.add_argument("--test", type=int, default=64, help="images per test domain")
    args = parser.parse_args()
    train = MNIST(args.mnist, train=True, download=False).data.numpy()
    test = MNIST(args.mnist, train=False, download=False).data.numpy()
    n_train, n_test = min(args.train, len(train) // 2), min(args.test, len(test) // 2)  # a small MNIST gives fewer
    order = np.random.default_rng(0).permutation(len(train))
    out = Path(args.out)
    write(train[order[:n_train]], out / "trainA")
    write(255 - train[order[n_train:2 * n_train]], out / "trainB")  # other digits, inverted
    write(test[:n_test], out / "testA")
    write(255 - test[n_test:2 * n_test], out / "testB")
    print(f"{out}: trainA/trainB {n_train} images each, testA/testB {n_test} each")


if __name__ == "__main__":
    main()
