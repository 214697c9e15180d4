"""DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout for D's inputs.

The same policy is applied to real and fake images before D, in D's step and in G's (gradients flow
back through the augmentation to G), with fresh random draws per call. Follows the authors' code.
"""

import torch
import torch.nn.functional as F
from torch import Tensor

from gantrain.errors import UserError


def brightness(x: Tensor) -> Tensor:
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def saturation(x: Tensor) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def contrast(x: Tensor) -> Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: Tensor, ratio: float = 0.125) -> Tensor:
    """Shift each image by up to ratio of its size, filling with zeros."""
    b, _, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    th = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tw = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gb, gh, gw = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(h, device=x.device),
                                torch.arange(w, device=x.device), indexing="ij")
    gh = torch.clamp(gh + th + 1, 0, h + 1)
    gw = torch.clamp(gw + tw + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return padded.permute(0, 2, 3, 1).contiguous()[gb, gh, gw].permute(0, 3, 1, 2)


def cutout(x: Tensor, ratio: float = 0.5) -> Tensor:
    """Zero a random square of ratio of the image size in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oh = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ow = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gb, gh, gw = torch.meshgrid(torch.arange(b, device=x.device), torch.arange(ch, device=x.device),
                                torch.arange(cw, device=x.device), indexing="ij")
    gh = torch.clamp(gh + oh - ch // 2, min=0, max=h - 1)
    gw = torch.clamp(gw + ow - cw // 2, min=0, max=w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[gb, gh, gw] = 0
    return x * mask.unsqueeze(1)


POLICIES = {"color": [brightness, saturation, contrast], "translation": [translation], "cutout": [cutout]}


def parse_policy(policy: str | list | None) -> list[str]:
    """'color,translation,cutout' (or a list) -> the names, checked."""
    if not policy:
        return []
    names = [p.strip() for p in (policy.split(",") if isinstance(policy, str) else policy) if p.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        raise UserError(f"model.diffaugment={policy}: unknown {', '.join(unknown)}; use any of {', '.join(POLICIES)}")
    return names


def diff_augment(x: Tensor, policy: list[str]) -> Tensor:
    """Apply the policy's transforms, in order, to (B, C, H, W) images."""
    for name in policy:
        for transform in POLICIES[name]:
            x = transform(x)
    return x
