"""Latent codes: draws (with BigGAN's truncation trick for normal ones), interpolation and paths between them."""

import math

import torch
from torch import Tensor

from gantrain.errors import UserError

DISTRIBUTIONS = ("normal", "uniform")
MAX_CANDIDATES = 1 << 22  # redraws per round of truncation: 16 MB of floats, whatever the threshold


def check_truncation(z_dist: str, truncation: float | None) -> None:
    """Truncation redraws normal latents beyond a threshold; uniform ones are bounded already."""
    if truncation is None:
        return
    if z_dist != "normal":
        raise UserError(f"truncation={truncation}: the truncation trick needs normal latents; this model draws "
                        f"{z_dist} ones (z in [-1, 1] already): drop truncation=")
    if not isinstance(truncation, (int, float)) or isinstance(truncation, bool) or not truncation > 0:
        raise UserError(f"truncation={truncation}: use a positive threshold such as 0.7 (smaller: images closer to "
                        f"the average, less varied)")


def draw(n: int, dim: int, dist: str = "normal", generator: torch.Generator | None = None,
         device: torch.device | None = None, truncation: float | None = None) -> Tensor:
    """(n, dim) latent codes: N(0, 1) or U[-1, 1]; with `truncation`, normal ones truncated to [-t, t]."""
    check_truncation(dist, truncation)
    if dist == "uniform":
        return torch.rand(n, dim, generator=generator, device=device) * 2 - 1
    z = torch.randn(n, dim, generator=generator, device=device)
    return z if truncation is None else truncate(z, truncation, generator)


def truncate(z: Tensor, threshold: float, generator: torch.Generator | None = None) -> Tensor:
    """BigGAN's truncation trick, in place: every component with |z_i| > threshold is drawn again (from N(0, 1),
    until it falls within), so the values already within stay as they were and the rest follow N(0, 1)
    restricted to [-t, t]. Candidates come in rounds sized by the chance of landing within, so a small
    threshold costs few rounds."""
    within = math.erf(threshold / math.sqrt(2))  # P(|z_i| <= t) under N(0, 1)
    outside = (z.abs() > threshold).nonzero(as_tuple=True)
    while len(outside[0]):
        wanted = len(outside[0])
        count = min(int(wanted / within * 1.2) + 16, MAX_CANDIDATES)
        candidates = torch.randn(count, generator=generator, device=z.device, dtype=z.dtype)
        candidates = candidates[candidates.abs() <= threshold][:wanted]
        placed = tuple(index[:len(candidates)] for index in outside)
        z[placed] = candidates
        outside = tuple(index[len(candidates):] for index in outside)
    return z


def slerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Spherical interpolation from a (D,) to b (D,) at weights (S,) in [0, 1] -> (S, D).

    A straight line between two normal draws passes near the origin, where N(0, I) in many dimensions puts
    almost no mass (its midpoint has ~0.71 of their norm), so G sees unusual inputs there; along the great
    circle the norm stays that of the ends (Shoemake; White, "Sampling Generative Networks", 2016)."""
    cos = torch.dot(a / a.norm(), b / b.norm()).clamp(-1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:  # (nearly) the same direction: the straight line is the arc
        return lerp(a, b, weights)
    w = weights[:, None].to(a.dtype)
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


def lerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Linear interpolation from a (D,) to b (D,) at weights (S,) -> (S, D): the path for uniform latents,
    whose cube [-1, 1]^D contains every straight line between two of its points."""
    w = weights[:, None].to(a.dtype)
    return (1 - w) * a + w * b


def interpolate(a: Tensor, b: Tensor, steps: int, dist: str = "normal") -> Tensor:
    """`steps` latents (steps, D) from a to b, both ends included: slerp for normal latents, linear for uniform."""
    weights = torch.linspace(0, 1, steps)
    return slerp(a, b, weights) if dist == "normal" else lerp(a, b, weights)


def loop_through(points: Tensor, frames: int, dist: str = "normal") -> Tensor:
    """A closed path through points (K, D): `frames` latents from each point towards the next, the last point
    leading back to the first, so an animation of the K * frames latents (K * frames, D) loops seamlessly."""
    weights = torch.arange(frames) / frames  # each segment's end is the next segment's start
    path = []
    for k in range(len(points)):
        a, b = points[k], points[(k + 1) % len(points)]
        path.append(slerp(a, b, weights) if dist == "normal" else lerp(a, b, weights))
    return torch.cat(path)
