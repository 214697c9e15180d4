"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training GANs with limited data").

D sees every image it judges (real and fake, in D's step and in G's) through the same random, differentiable
augmentations, each applied to each image with probability p. p adapts so that r_t = E[sign(D(real))], the
overfitting heuristic, tracks a target (0.6 in the paper): every `interval` D steps p moves by
sign(r_t - target) * (images seen in those steps) / (kimg * 1000), so it can cross [0, 1] in kimg thousand images.

The pipeline is the paper's 'bgc', with its default strengths (StyleGAN2-ADA's training/augment.py):
    blit   x-flip, 90-degree rotations, integer translation (up to 1/8 of the size)
    geom   isotropic scale (lognormal, std 0.2 octaves), arbitrary rotation (before and after the anisotropic
           scale, each with probability 1 - sqrt(1 - p), so that a rotation happens with probability p),
           anisotropic scale (std 0.2), fractional translation (std 1/8 of the size)
    color  brightness (std 0.2), contrast (lognormal, std 0.5 octaves), luma flip, hue rotation (up to 180
           degrees), saturation (lognormal, std 1 octave); on images that are not RGB only brightness and contrast
           (the other three mix the three colour channels)
"""

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import UserError

OPS = ("blit", "geom", "color")
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0


def parse_ops(ops: str | list | tuple | None) -> tuple[str, ...]:
    """'blit,geom,color' (or a list) -> the group names, checked."""
    names = [n.strip() for n in (ops.split(",") if isinstance(ops, str) else ops or []) if str(n).strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown or not names:
        what = f"unknown {', '.join(map(str, unknown))}" if unknown else "no augmentation named"
        raise UserError(f"model.ada_ops={ops}: {what}; use any of {','.join(OPS)} (e.g. model.ada_ops=blit,geom,color)")
    return tuple(dict.fromkeys(names))


def check_settings(target, kimg, interval) -> None:
    """One-line errors for values ADA cannot work with."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target < 1:
        raise UserError(f"model.ada={target}: the target of E[sign(D(real))] must be between 0 and 1 (the paper "
                        f"uses 0.6), or null to turn ADA off")
    if isinstance(kimg, bool) or not isinstance(kimg, (int, float)) or not kimg > 0:
        raise UserError(f"model.ada_kimg={kimg}: must be a positive number (thousands of real images over which p "
                        f"may go from 0 to 1, e.g. 20)")
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
        raise UserError(f"model.ada_interval={interval}: must be a positive integer (D steps between adjustments "
                        f"of p, e.g. 4)")


# ---------------------------------------------------------------- batched matrices: (B,) parameters -> (B, 3, 3) / (B, 4, 4)
def _matrices(rows: list[list], n: int) -> Tensor:
    """Per-image square matrices from rows of (B,) tensors and Python numbers."""
    ref = next(v for row in rows for v in row if isinstance(v, Tensor))
    flat = [v if isinstance(v, Tensor) else torch.full_like(ref, float(v)) for row in rows for v in row]
    return torch.stack(flat, dim=-1).view(-1, n, n)


def translate2d(tx: Tensor, ty: Tensor) -> Tensor:
    return _matrices([[1, 0, tx], [0, 1, ty], [0, 0, 1]], 3)


def scale2d(sx: Tensor, sy: Tensor) -> Tensor:
    return _matrices([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], 3)


def rotate2d(theta: Tensor) -> Tensor:
    c, s = theta.cos(), theta.sin()
    return _matrices([[c, -s, 0], [s, c, 0], [0, 0, 1]], 3)


def translate3d(t: Tensor) -> Tensor:
    return _matrices([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], 4)


def scale3d(s: Tensor) -> Tensor:
    return _matrices([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], 4)


def rotate3d(axis: tuple[float, float, float], theta: Tensor) -> Tensor:
    """Rotation by theta (B,) about a unit axis (x, y, z)."""
    vx, vy, vz = axis
    s, c = theta.sin(), theta.cos()
    cc = 1 - c
    return _matrices([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                      [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                      [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                      [0, 0, 0, 1]], 4)


def _gate(value: Tensor, p: Tensor, identity: float) -> tuple[Tensor, Tensor]:
    """value where a fresh U[0, 1) draw per image is below p, else the identity; and that mask (B,)."""
    applied = torch.rand(value.shape[0], device=value.device) < p
    return torch.where(applied.view(-1, *[1] * (value.ndim - 1)), value, torch.full_like(value, identity)), applied


def geometric_matrices(b: int, h: int, w: int, p: Tensor, ops: tuple[str, ...],
                       device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """G_inv (B, 3, 3), mapping each output pixel to where it is read from in the input (centred pixel
    coordinates), composed of the blit and geom transforms drawn for each image; and which images got each
    transform ({name: (B,) bool})."""
    rand = lambda *shape: torch.rand(*shape, device=device)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, device=device)  # noqa: E731
    G = torch.eye(3, device=device).expand(b, 3, 3)
    applied = {}
    if "blit" in ops:
        flip, applied["xflip"] = _gate(torch.floor(rand(b) * 2), p, 0.0)  # then a fair coin: flipped or not
        G = G @ scale2d(1 - 2 * flip, torch.ones_like(flip))
        quarter, applied["rotate90"] = _gate(torch.floor(rand(b) * 4), p, 0.0)  # 0, 90, 180 or 270 degrees
        G = G @ rotate2d(math.pi / 2 * quarter)
        t, applied["xint"] = _gate((rand(b, 2) * 2 - 1) * XINT_MAX, p, 0.0)
        G = G @ translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h))
    if "geom" in ops:
        s, applied["scale"] = _gate(torch.exp2(randn(b) * SCALE_STD), p, 1.0)
        G = G @ scale2d(1 / s, 1 / s)
        p_rot = 1 - torch.sqrt((1 - p).clamp(0, 1))  # P(pre or post rotation) = p
        pre, pre_applied = _gate((rand(b) * 2 - 1) * math.pi * ROTATE_MAX, p_rot, 0.0)
        G = G @ rotate2d(pre)
        s, applied["aniso"] = _gate(torch.exp2(randn(b) * ANISO_STD), p, 1.0)
        G = G @ scale2d(1 / s, s)
        post, post_applied = _gate((rand(b) * 2 - 1) * math.pi * ROTATE_MAX, p_rot, 0.0)
        G = G @ rotate2d(post)
        applied["rotate"] = pre_applied | post_applied
        t, applied["xfrac"] = _gate(randn(b, 2) * XFRAC_STD, p, 0.0)
        G = G @ translate2d(-t[:, 0] * w, -t[:, 1] * h)
    return G, applied


def color_matrices(b: int, channels: int, p: Tensor, device: torch.device) -> tuple[Tensor, dict[str, Tensor]]:
    """C (B, 4, 4), acting on homogeneous RGB colours, composed of the colour transforms drawn for each image;
    and which images got each transform. Images that are not RGB get brightness and contrast only."""
    rand = lambda *shape: torch.rand(*shape, device=device)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, device=device)  # noqa: E731
    eye = torch.eye(4, device=device)
    luma = (1 / math.sqrt(3),) * 3  # the luma axis (grey), a unit vector
    vv = torch.zeros(4, 4, device=device)  # v v^T for v = (luma, 0): built in place, no copy from the host
    vv[:3, :3] = 1 / 3
    C = eye.expand(b, 4, 4)
    applied = {}
    brightness, applied["brightness"] = _gate(randn(b) * BRIGHTNESS_STD, p, 0.0)
    C = translate3d(brightness) @ C
    contrast, applied["contrast"] = _gate(torch.exp2(randn(b) * CONTRAST_STD), p, 1.0)
    C = scale3d(contrast) @ C
    if channels == 3:
        flip, applied["lumaflip"] = _gate(torch.floor(rand(b, 1, 1) * 2), p, 0.0)  # then a fair coin
        C = (eye - 2 * vv * flip) @ C  # Householder reflection along the luma axis
        theta, applied["hue"] = _gate((rand(b) * 2 - 1) * math.pi * HUE_MAX, p, 0.0)
        C = rotate3d(luma, theta) @ C  # rotation about the luma axis
        s, applied["saturation"] = _gate(torch.exp2(randn(b, 1, 1) * SATURATION_STD), p, 1.0)
        C = (vv + (eye - vv) * s) @ C
    return C, applied


# ---------------------------------------------------------------- applying them
def warp(x: Tensor, G_inv: Tensor, mode: str) -> Tensor:
    """x (B, C, H, W) resampled at G_inv @ (output pixel), reflecting at the borders."""
    _, _, h, w = x.shape
    # the same map in affine_grid's coordinates, S G_inv S^-1 with S = diag(2/w, 2/h, 1) taking centred pixel
    # coordinates to [-1, 1] (align_corners=False); written out, so that no constant is copied from the host
    g = G_inv
    theta = torch.stack([g[:, 0, 0], g[:, 0, 1] * (h / w), g[:, 0, 2] * (2 / w),
                         g[:, 1, 0] * (w / h), g[:, 1, 1], g[:, 1, 2] * (2 / h)], dim=-1).view(-1, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="reflection", align_corners=False)


def recolor(x: Tensor, C: Tensor) -> Tensor:
    """x (B, C, H, W) with each image's colour matrix applied (for non-RGB images, its mean effect on grey)."""
    b, channels, h, w = x.shape
    C = C.to(x.dtype)
    flat = x.reshape(b, channels, h * w)
    if channels == 3:
        out = C[:, :3, :3] @ flat + C[:, :3, 3:]
    else:
        grey = C[:, :3, :].mean(dim=1, keepdim=True)  # (B, 1, 4): how a grey level maps (brightness, contrast)
        out = flat * grey[:, :, :3].sum(dim=2, keepdim=True) + grey[:, :, 3:]
    return out.reshape(b, channels, h, w)


class ADA(nn.Module):
    """The augmentation pipeline, its probability p and the statistics that adapt it.

    Buffers (all in the state dict, so a checkpoint resumes exactly): `p`; `signs` and `count`, the sum of
    sign(D(real)) and the number of logits since the last adjustment; `rt`, the last r_t. The D steps since the
    last adjustment are extra state.

    Geometric transforms are one composed affine matrix per image, applied with one `F.grid_sample` (bilinear,
    reflection padding). The official code instead pads, upsamples 2x with a wavelet filter, samples and
    downsamples, to limit aliasing; the plain bilinear sample used here is cheaper and blurs a little more.
    A pipeline without geom samples with `nearest` instead: flips, quarter turns and integer translations map pixel
    centres onto pixel centres, so every output pixel is an exact copy of an input pixel (a permutation of them,
    where no border is crossed; reflected copies where one is).
    The random draws come from the global torch RNG on the images' device (which checkpoints save and restore).
    """

    def __init__(self, target: float = 0.6, kimg: float = 20, interval: int = 4, ops="blit,geom,color"):
        super().__init__()
        check_settings(target, kimg, interval)
        self.target, self.kimg, self.interval = float(target), float(kimg), int(interval)
        self.ops = parse_ops(ops)
        self.register_buffer("p", torch.zeros(()))
        self.register_buffer("signs", torch.zeros(()))
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("rt", torch.zeros(()))
        self.calls = 0  # adjust() calls since the last adjustment
        self._p = 0.0  # p on the host, read once per adjustment (None: read it at the next forward)
        self.register_load_state_dict_post_hook(ADA._loaded)

    @staticmethod
    def _loaded(module: "ADA", keys) -> None:
        module._p = None

    def get_extra_state(self) -> dict:
        return {"calls": self.calls}

    def set_extra_state(self, state: dict) -> None:
        self.calls = int(state["calls"])

    def probability(self) -> float:
        if self._p is None:
            self._p = float(self.p)
        return self._p

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) augmented (a new draw per call); at p = 0, x itself, with nothing drawn."""
        if x.ndim != 4:
            raise UserError(f"model.ada augments images (B, C, H, W); this data gives samples of shape "
                            f"{tuple(x.shape[1:])}: set model.ada=null")
        if self.probability() == 0.0:
            return x
        b, channels, h, w = x.shape
        p = self.p.to(x.device)
        out = x if x.dtype in (torch.float32, torch.float64) else x.float()
        if "blit" in self.ops or "geom" in self.ops:
            G_inv, _ = geometric_matrices(b, h, w, p, self.ops, x.device)
            out = warp(out, G_inv, "bilinear" if "geom" in self.ops else "nearest")
        if "color" in self.ops:
            C, _ = color_matrices(b, channels, p, x.device)
            out = recolor(out, C)
        if channels > 1 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            out = out.contiguous(memory_format=torch.channels_last)  # D's layout (trainer.channels_last) kept
        return out.to(x.dtype)

    @torch.no_grad()
    def accumulate(self, real_logits: Tensor) -> None:
        """Add sign(D(real)) of a batch's logits, on the device (no host sync)."""
        self.signs += real_logits.detach().float().sign().sum()
        self.count += real_logits.numel()

    @torch.no_grad()
    def adjust(self, batch_size: int) -> None:
        """After each D step: every `interval` calls, move p towards the target by the images those steps saw
        (batch_size per step and process), then start the statistics afresh. Under torch.distributed the
        statistics are summed over processes first, so every process keeps the same p. Reads p to the host
        once per adjustment (the next forward needs to know whether it is 0)."""
        self.calls += 1
        if self.calls < self.interval:
            return
        world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        stats = torch.stack([self.signs, self.count])
        if world > 1:
            dist.all_reduce(stats)
        signs, count = stats.unbind()
        rt = signs / count.clamp(min=1)
        images = batch_size * self.interval * world
        step = torch.sign(rt - self.target) * (images / (self.kimg * 1000)) * (count > 0)
        self.p.copy_((self.p + step).clamp(0, 1))
        self.rt.copy_(torch.where(count > 0, rt, self.rt))
        self.signs.zero_()
        self.count.zero_()
        self.calls = 0
        self._p = float(self.p)

    def extra_repr(self) -> str:
        return f"target={self.target}, kimg={self.kimg}, interval={self.interval}, ops={','.join(self.ops)}"
