"""Make the StyleGAN2 golden file: NVlabs/stylegan2-ada-pytorch's own outputs for small networks, run on the CPU.

Usage: python scripts/make_stylegan2_golden.py OFFICIAL_REPO [--out tests/unit/models/data/stylegan2_golden.pt]

OFFICIAL_REPO is a checkout of https://github.com/NVlabs/stylegan2-ada-pytorch at commit
d72cc7d041b42ec8e806021a205ed9349f87c6a4 (the script refuses another commit when it can read the checkout's git HEAD).
The file in the repository was made with that commit, torch 2.14.1 on the CPU, by:
    git clone https://github.com/NVlabs/stylegan2-ada-pytorch /tmp/sg2ada-git
    git -C /tmp/sg2ada-git checkout d72cc7d041b42ec8e806021a205ed9349f87c6a4
    python scripts/make_stylegan2_golden.py /tmp/sg2ada-git
Nothing of the official repository is patched or copied: it is imported from its path. It needs no shim on the
CPU: its ops fall back to their reference implementations there ('ref', plain torch ops) and conv2d_gradfix is
off by default. Every network is called with force_fp32=True: the official blocks otherwise run in fp16 on any
device (networks.py decides by use_fp16 alone), and fp16 convolutions barely run on a CPU.

The networks (the official train.py's G_kwargs/D_kwargs structure, shrunk so the file stays small):
    G, G_orig, G_resnet: z_dim 32, w_dim 32, 5 classes, 16x16x3, mapping 2 layers, channel_base 128,
        channel_max 16 (widths 16, 16, 8), num_fp16_res 2, conv_clamp 8, architecture skip/orig/resnet
    D_resnet: mbstd group 2; D_orig: mbstd group 4, cmap_dim 8; D_skip: mbstd group 2 with 2 mbstd channels;
        all 5 classes, 16x16x3, channel_base 128, channel_max 16, num_fp16_res 2, conv_clamp 2
Every parameter and buffer except the fixed resample filters is moved away from its initial value by seeded
noise, so that biases, noise strengths, styles' biases and w_avg all count. The clamps (8 in G, 2 in D, where
train.py uses 256) are small enough that some activations of each network are clamped, so the clamp counts too.

The file is a dict of tensors only (torch.load(..., weights_only=True)):
    "<net>.<official state-dict key>"     the official state dicts (resample_filter buffers included)
    "z" (4, 32), "labels" (4,) int64, "c" (4, 5) one-hot: the generators' inputs
    "<G>.ws"                             mapping(z, c), eval mode, psi 1
    "<G>.img"                            G(z, c, noise_mode='const'), eval mode (fused modulation)
    "<G>.img_psi0.7", "<G>.img_psi0.7_cutoff2"   the same with truncation_psi 0.7 (cutoff None, then 2)
    "<G>.img_train", "<G>.w_avg_train"   train mode (modulation by scaling activations), then w_avg after that call
    "<G>.ws_grad"                        d(sum(img * probe))/d ws through synthesis, eval mode (path-length regularisation)
    "images" (4, 3, 16, 16), "probe" (4, 3, 16, 16): D's input, and the weights of the sum whose gradient is taken
    "<D>.logits" (4,), "<D>.img_grad"   D(images, c) and d(sum(logits))/d images (R1)
"""

import argparse
import subprocess
import sys
from pathlib import Path

import torch

OFFICIAL_COMMIT = "d72cc7d041b42ec8e806021a205ed9349f87c6a4"
G_CONV_CLAMP, D_CONV_CLAMP = 8.0, 2.0  # small enough that some activations of each network are clamped
Z_DIM, NUM_CLASSES, RESOLUTION, BATCH = 32, 5, 16, 4
SMALL = dict(channel_base=128, channel_max=16, num_fp16_res=2)
GENERATORS = {"G": "skip", "G_orig": "orig", "G_resnet": "resnet"}
DISCRIMINATORS = {
    "D_resnet": dict(architecture="resnet", epilogue_kwargs=dict(mbstd_group_size=2)),
    "D_orig": dict(architecture="orig", cmap_dim=8, epilogue_kwargs=dict(mbstd_group_size=4)),
    "D_skip": dict(architecture="skip", epilogue_kwargs=dict(mbstd_group_size=2, mbstd_num_channels=2)),
}


def import_official(repo: Path):
    """The official training.networks module, imported from the checkout, after checking its commit."""
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and head.stdout.strip() != OFFICIAL_COMMIT:
        sys.exit(f"{repo} is at {head.stdout.strip()}, not {OFFICIAL_COMMIT}: check that commit out")
    if head.returncode != 0:
        print(f"warning: cannot read {repo}'s git HEAD; assuming it is {OFFICIAL_COMMIT}")
    sys.path.insert(0, str(repo))
    from training import networks  # noqa: PLC0415 (only importable once the path is set)

    return networks


def perturb(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Add seeded noise to every parameter and buffer but the resample filters (fixed, not learned)."""
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("resample_filter"):
                continue
            # Mapping layers scale their biases by lr_multiplier 0.01 at run time: move those 100x further.
            scale = 50.0 if "mapping.fc" in name and name.endswith("bias") else 0.5
            tensor.add_(torch.randn(tensor.shape, generator=generator) * scale)


def generator_outputs(G, name: str, z: torch.Tensor, c: torch.Tensor, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    G.eval()
    out = {f"{name}.{key}": value.clone() for key, value in G.state_dict().items()}
    with torch.no_grad():
        out[f"{name}.ws"] = G.mapping(z, c)
        out[f"{name}.img"] = G(z, c, noise_mode="const", force_fp32=True)
        out[f"{name}.img_psi0.7"] = G(z, c, truncation_psi=0.7, noise_mode="const", force_fp32=True)
        out[f"{name}.img_psi0.7_cutoff2"] = G(z, c, truncation_psi=0.7, truncation_cutoff=2, noise_mode="const", force_fp32=True)
    ws = out[f"{name}.ws"].clone().requires_grad_(True)
    (G.synthesis(ws, noise_mode="const", force_fp32=True) * probe).sum().backward()
    out[f"{name}.ws_grad"] = ws.grad
    G.train()
    with torch.no_grad():
        out[f"{name}.img_train"] = G(z, c, noise_mode="const", force_fp32=True)
    out[f"{name}.w_avg_train"] = G.mapping.w_avg.clone()
    return out


def discriminator_outputs(D, name: str, images: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
    D.eval()
    out = {f"{name}.{key}": value.clone() for key, value in D.state_dict().items()}
    images = images.clone().requires_grad_(True)
    logits = D(images, c, force_fp32=True)
    logits.sum().backward()
    out[f"{name}.logits"] = logits.detach().flatten()
    out[f"{name}.img_grad"] = images.grad
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="checkout of NVlabs/stylegan2-ada-pytorch at OFFICIAL_COMMIT")
    parser.add_argument("--out", type=Path, default=Path("tests/unit/models/data/stylegan2_golden.pt"))
    args = parser.parse_args()
    networks = import_official(args.official.resolve())
    torch.manual_seed(0)
    noise = torch.Generator().manual_seed(1)
    labels = torch.arange(BATCH) % NUM_CLASSES
    golden = {
        "z": torch.randn(BATCH, Z_DIM, generator=noise), "labels": labels,
        "c": torch.nn.functional.one_hot(labels, NUM_CLASSES).float(),
        "images": torch.rand(BATCH, 3, RESOLUTION, RESOLUTION, generator=noise) * 2 - 1,
        "probe": torch.randn(BATCH, 3, RESOLUTION, RESOLUTION, generator=noise),
    }
    for name, architecture in GENERATORS.items():
        G = networks.Generator(
            z_dim=Z_DIM, c_dim=NUM_CLASSES, w_dim=32, img_resolution=RESOLUTION, img_channels=3,
            mapping_kwargs=dict(num_layers=2), synthesis_kwargs=dict(architecture=architecture, conv_clamp=G_CONV_CLAMP, **SMALL),
        )
        perturb(G, noise)
        golden |= generator_outputs(G, name, golden["z"], golden["c"], golden["probe"])
    for name, kwargs in DISCRIMINATORS.items():
        D = networks.Discriminator(c_dim=NUM_CLASSES, img_resolution=RESOLUTION, img_channels=3, conv_clamp=D_CONV_CLAMP, **SMALL, **kwargs)
        perturb(D, noise)
        golden |= discriminator_outputs(D, name, golden["images"], golden["c"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({key: value.detach().contiguous() for key, value in golden.items()}, args.out)
    print(f"wrote {args.out}: {len(golden)} tensors, {args.out.stat().st_size / 1e6:.2f} MB")
    for key in sorted(k for k in golden if k.endswith(("img", "logits"))):
        print(f"  {key}: range [{golden[key].min():.3f}, {golden[key].max():.3f}]")


if __name__ == "__main__":
    main()
