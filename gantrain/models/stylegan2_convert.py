"""Official NVlabs/stylegan2-ada-pytorch state dicts -> gantrain's StyleGAN2 modules: names, shapes, constructor arguments.

The official state dicts are what `torch.save(G_ema.state_dict(), ...)` writes from a network pickle loaded with the
official code. Names differ in three ways: mapping layers `fc{i}` are ours `layers.{i}`; synthesis blocks `b{res}`
are `blocks.{log2(res) - 2}`; discriminator blocks `b{res}` are `blocks.{log2(R / res)}` and `b4` is `epilogue`.
The official `resample_filter` buffers are our constant [1, 3, 3, 1] filter: they are checked, then dropped.
What the weights cannot tell (reduced precision, clamping, minibatch-std group size) the caller passes; the
official train.py's values are the defaults.
"""

import math
import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.stylegan2 import Discriminator, Generator
from gantrain.models.stylegan2_ops import fir_filter

OFFICIAL_CHANNEL_BASES = (32768, 16384)  # train.py's fmaps 1 and 0.5: preferred when they give the same widths


def convert_generator(
    official: Mapping[str, Tensor], num_fp16_res: int = 4, conv_clamp: float | None = 256
) -> tuple[dict[str, Tensor], dict]:
    """(our Generator's state dict, its constructor arguments) from an official G or G_ema state dict."""
    _check_filters(official, "generator")
    names = {_generator_key(key): key for key in official if not key.endswith("resample_filter")}  # ours -> official
    kwargs = _inferred(infer_generator_kwargs, official, "generator") | dict(num_fp16_res=num_fp16_res, conv_clamp=conv_clamp)
    _check_fits(official, names, _on_meta(Generator, kwargs), "generator")
    return {ours: official[theirs] for ours, theirs in names.items()}, kwargs


def convert_discriminator(
    official: Mapping[str, Tensor], mbstd_group_size: int | None = 4, num_fp16_res: int = 4, conv_clamp: float | None = 256
) -> tuple[dict[str, Tensor], dict]:
    """(our Discriminator's state dict, its constructor arguments) from an official D state dict."""
    _check_filters(official, "discriminator")
    resolution = _discriminator_resolution(official)
    names = {_discriminator_key(key, resolution): key for key in official if not key.endswith("resample_filter")}
    kwargs = _inferred(infer_discriminator_kwargs, official, "discriminator") | dict(
        mbstd_group_size=mbstd_group_size, num_fp16_res=num_fp16_res, conv_clamp=conv_clamp
    )
    _check_fits(official, names, _on_meta(Discriminator, kwargs), "discriminator")
    return {ours: official[theirs] for ours, theirs in names.items()}, kwargs


def load_generator(official: Mapping[str, Tensor], **options) -> Generator:
    """Our Generator holding an official state dict's weights (options: num_fp16_res, conv_clamp)."""
    state, kwargs = convert_generator(official, **options)
    G = Generator(**kwargs)
    G.load_state_dict(state)
    return G


def load_discriminator(official: Mapping[str, Tensor], **options) -> Discriminator:
    """Our Discriminator holding an official state dict's weights (options: mbstd_group_size, num_fp16_res, conv_clamp)."""
    state, kwargs = convert_discriminator(official, **options)
    D = Discriminator(**kwargs)
    D.load_state_dict(state)
    return D


def infer_generator_kwargs(official: Mapping[str, Tensor]) -> dict:
    """Generator arguments the weights determine: shape, z_dim, num_classes, w_dim, mapping depth, widths, architecture."""
    blocks = _resolutions(official, r"synthesis\.b(\d+)\.")
    if not blocks or "mapping.fc0.weight" not in official:
        raise UserError("this is not an official StyleGAN2 generator state dict (no synthesis.b4 / mapping.fc0): pass G or G_ema's state_dict()")
    resolution, layers = max(blocks), _count(official, r"mapping\.fc(\d+)\.weight")
    embed = official.get("mapping.embed.weight")  # (w_dim, num_classes)
    widths = {4: official["synthesis.b4.const"].shape[0]} | {r: official[f"synthesis.b{r}.conv1.weight"].shape[0] for r in blocks}
    torgbs = sum(f"synthesis.b{r}.torgb.weight" in official for r in blocks)
    architecture = "resnet" if f"synthesis.b{resolution}.skip.weight" in official else "skip" if torgbs == len(blocks) else "orig"
    return dict(
        shape=[official[f"synthesis.b{resolution}.torgb.weight"].shape[0], resolution, resolution],
        z_dim=official["mapping.fc0.weight"].shape[1] - (embed.shape[0] if embed is not None else 0),
        num_classes=embed.shape[1] if embed is not None else 0,
        w_dim=official[f"mapping.fc{layers - 1}.weight"].shape[0],
        mapping_layers=layers,
        architecture=architecture,
        **_channel_options(widths),
    )


def infer_discriminator_kwargs(official: Mapping[str, Tensor]) -> dict:
    """Discriminator arguments the weights determine: shape, num_classes, widths, architecture, mbstd channels, cmap."""
    resolution = _discriminator_resolution(official)
    blocks = [r for r in _resolutions(official, r"b(\d+)\.") if r > 4]
    widths = {4: official["b4.conv.weight"].shape[0]} | {r: official[f"b{r}.conv0.weight"].shape[0] for r in blocks}
    fromrgbs = sum(f"b{r}.fromrgb.weight" in official for r in blocks)
    architecture = "resnet" if f"b{resolution}.skip.weight" in official else "skip" if fromrgbs == len(blocks) else "orig"
    embed = official.get("mapping.embed.weight")  # (cmap_dim, num_classes)
    return dict(
        shape=[official[f"b{resolution}.fromrgb.weight"].shape[1], resolution, resolution],
        num_classes=embed.shape[1] if embed is not None else 0,
        architecture=architecture,
        mbstd_num_channels=official["b4.conv.weight"].shape[1] - widths[4],
        cmap_dim=embed.shape[0] if embed is not None else None,
        mapping_layers=_count(official, r"mapping\.fc(\d+)\.weight") if embed is not None else 8,
        **_channel_options(widths),
    )


def _generator_key(key: str) -> str:
    key = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.layers.\1.", key)
    return re.sub(r"^synthesis\.b(\d+)\.", lambda m: f"synthesis.blocks.{int(math.log2(int(m[1]))) - 2}.", key)


def _discriminator_key(key: str, resolution: int) -> str:
    key = re.sub(r"^mapping\.fc(\d+)\.", r"mapping.layers.\1.", key)
    key = re.sub(r"^b4\.", "epilogue.", key)
    return re.sub(r"^b(\d+)\.", lambda m: f"blocks.{int(math.log2(resolution // int(m[1])))}.", key)


def _discriminator_resolution(official: Mapping[str, Tensor]) -> int:
    blocks = [r for r in _resolutions(official, r"b(\d+)\.") if r > 4]
    if not blocks or "b4.conv.weight" not in official:
        raise UserError("this is not an official StyleGAN2 discriminator state dict (no b4.conv / b8): pass D's state_dict()")
    return max(blocks)


def _resolutions(official: Mapping[str, Tensor], pattern: str) -> list[int]:
    return sorted({int(m[1]) for key in official if (m := re.match(pattern, key))})


def _count(official: Mapping[str, Tensor], pattern: str) -> int:
    return len({m[1] for key in official if (m := re.fullmatch(pattern, key))})


def _channel_options(widths: dict[int, int]) -> dict[str, int]:
    """channel_base and channel_max that give these widths per resolution (official values first, else the smallest)."""
    channel_max = max(widths.values())
    smallest = max(width * res if width < channel_max else channel_max * res for res, width in widths.items())
    for base in (*OFFICIAL_CHANNEL_BASES, smallest):
        if all(min(base // res, channel_max) == width for res, width in widths.items()):
            return dict(channel_base=base, channel_max=channel_max)
    raise UserError(f"the widths per resolution {widths} do not follow min(channel_base // res, channel_max) as official networks do")


def _check_filters(official: Mapping[str, Tensor], network: str) -> None:
    expected = fir_filter()
    for key, value in official.items():
        if key.endswith("resample_filter") and (value.shape != expected.shape or not torch.allclose(value.float(), expected)):
            raise UserError(f"the official {network}'s {key} is not the [1, 3, 3, 1] filter gantrain's StyleGAN2 uses: it cannot be imported")


def _inferred(infer, official: Mapping[str, Tensor], network: str) -> dict:
    try:
        return infer(official)
    except KeyError as missing:
        raise UserError(f"the official {network} lacks {missing.args[0]}: pass the complete state_dict() of a StyleGAN2-ADA network") from None


def _on_meta(network: type[nn.Module], kwargs: dict) -> nn.Module:
    with torch.device("meta"):  # shapes only: costs no memory or time
        return network(**kwargs)


def _check_fits(official: Mapping[str, Tensor], names: Mapping[str, str], module: nn.Module, network: str) -> None:
    """Every official key maps to one of the module's, with its shape, and none is missing; else name the first misfit."""
    expected = module.state_dict()
    for ours, theirs in names.items():
        if ours not in expected:
            raise UserError(f"the official {network} has {theirs}, which gantrain's StyleGAN2 {network} does not: is it a StyleGAN2-ADA network?")
        if tuple(official[theirs].shape) != tuple(expected[ours].shape):
            raise UserError(
                f"the official {network}'s {theirs} has shape {tuple(official[theirs].shape)} where gantrain's {ours} has "
                f"{tuple(expected[ours].shape)}: its configuration is not one gantrain can infer"
            )
    missing = [key for key in expected if key not in names]
    if missing:
        raise UserError(f"the official {network} lacks the weights of gantrain's {missing[0]}: pass a complete state_dict()")
