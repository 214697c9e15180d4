"""StyleGAN2-ADA's generator and discriminator (Karras et al. 2020), sized by the data, faithful to NVlabs/stylegan2-ada-pytorch.

Same maths, parameters and buffers as the official training/networks.py (the parameter counts of its `cifar` and
`paper256` configurations and a golden test of its outputs hold this; stylegan2_convert.py loads its state dicts).
Reduced precision: the blocks of the `num_fp16_res` highest resolutions run in fp16 on CUDA, as official, and in
bf16 on other devices (the official code picks fp16 on any device, where CPU convolutions crawl); `force_fp32=True`
runs everything in fp32 (the official code's switch of the same name). On CPUs without native bf16, fp32 is faster:
num_fp16_res=0 there.
Labels are class indices (B,) or float vectors (B, num_classes); the official code reads one-hot vectors.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.layers import freeze_blocks
from gantrain.models.shapes import image_shape, power_of_two_blocks
from gantrain.models.stylegan2_ops import (
    LRELU_GAIN, Conv2dLayer, FullyConnected, bias_act, downsample2d, fir_filter, minibatch_std,
    modulated_conv2d, normalize_2nd_moment, reduced_dtype, upsample2d,
)

ARCHITECTURES = ("orig", "skip", "resnet")
NOISE_MODES = ("random", "const", "none")


def check_image(shape: Sequence[int]) -> tuple[int, int]:
    """(channels, resolution) of data StyleGAN2 can model: 1 or 3 channels, square, a power of two from 16 to 1024."""
    channels, size = image_shape(shape, "stylegan2")
    power_of_two_blocks(size, "stylegan2", smallest=16, largest=1024)
    if channels not in (1, 3):
        raise UserError(f"model=stylegan2 makes 1- or 3-channel images, the data has {channels}: set data.channels to 1 or 3")
    return channels, size


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UserError(f"model=stylegan2 got {name}={value}: use one of {', '.join(choices)}")


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: fewer as images grow (official channels_dict)."""
    return min(channel_base // resolution, channel_max)


def fp16_resolution(resolution: int, num_fp16_res: int) -> int:
    """Blocks at this resolution and above run in reduced precision; never 4x4 (official)."""
    return max(2 ** (int(math.log2(resolution)) + 1 - num_fp16_res), 8)


def label_vectors(labels: Tensor, num_classes: int) -> Tensor:
    """(B,) class indices -> (B, num_classes) one-hot; (B, num_classes) vectors pass through as float32."""
    if labels.ndim == 1:
        return F.one_hot(labels.long(), num_classes).float()
    return labels.float()


class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ labels] -> w (B, w_dim), broadcast to (B, num_ws, w_dim); tracks the average w for truncation.

    The discriminator reuses it with z_dim=0 to map labels to its projection vector (num_ws=None, no w_avg).
    """

    def __init__(
        self, z_dim: int, num_classes: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
        lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995,
    ):
        super().__init__()
        self.z_dim, self.num_classes, self.num_ws, self.w_avg_beta = z_dim, num_classes, num_ws, w_avg_beta
        embed_features = w_dim if num_classes else 0
        if num_classes:
            self.embed = FullyConnected(num_classes, embed_features)
        features = [z_dim + embed_features] + [w_dim] * num_layers
        self.layers = nn.ModuleList(
            FullyConnected(features[i], features[i + 1], lrelu=True, lr_multiplier=lr_multiplier) for i in range(num_layers)
        )
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(
        self, z: Tensor | None, labels: Tensor | None = None, truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None, skip_w_avg_update: bool = False,
    ) -> Tensor:
        x = self.embed_inputs(z, labels)
        for layer in self.layers:
            x = layer(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is None:
            return x  # (B, w_dim)
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # (B, num_ws, w_dim)
        if truncation_psi != 1:  # pull the first `truncation_cutoff` ws (all if None) toward the average w
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            x[:, :cutoff] = self.w_avg.lerp(x[:, :cutoff], truncation_psi)
        return x

    def embed_inputs(self, z: Tensor | None, labels: Tensor | None) -> Tensor:
        """(B, z_dim [+ w_dim]): normalised z, then the normalised label embedding."""
        parts = [normalize_2nd_moment(z.float())] if self.z_dim else []
        if self.num_classes:
            if labels is None:
                raise ValueError("this StyleGAN2 network is conditional: pass labels")
            parts.append(normalize_2nd_moment(self.embed(label_vectors(labels, self.num_classes))))
        return torch.cat(parts, dim=1)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (upsampling 2x first if up=2), per-pixel noise with a learned strength, bias, leaky ReLU, clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, up: int = 1, conv_clamp: float | None = None):
        super().__init__()
        self.resolution, self.up, self.conv_clamp = resolution, up, conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)  # w -> styles, starting at 1
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))  # noise_mode='const'
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "random", fused: bool = True, gain: float = 1.0) -> Tensor:
        styles = self.affine(w)  # (B, in_channels)
        noise = None
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution, device=x.device) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength  # (H, W), the same for every sample
        x = modulated_conv2d(x, self.weight, styles, self.resample_filter, up=self.up, noise=noise, fused=fused)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, lrelu=True, gain=LRELU_GAIN * gain, clamp=clamp)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation, plus bias (B, C, H, W) -> (B, img_channels, H, W)."""

    def __init__(self, in_channels: int, img_channels: int, w_dim: int, conv_clamp: float | None = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnected(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn(img_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1 / math.sqrt(in_channels)  # equalized lr, applied to the styles (no demodulation here)

    def forward(self, x: Tensor, w: Tensor, fused: bool = True) -> Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused=fused)
        return bias_act(x, self.bias, lrelu=False, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: (upsample +) two modulated convs, and its toRGB output."""

    def __init__(
        self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
        is_last: bool, architecture: str, conv_clamp: float | None, use_fp16: bool,
    ):
        super().__init__()
        self.in_channels, self.architecture, self.use_fp16 = in_channels, architecture, use_fp16
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn(out_channels, resolution, resolution))  # the learned 4x4 input
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, conv_clamp=conv_clamp)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1 if is_last or architecture == "skip" else 0
        if self.num_torgb:
            self.torgb = ToRGB(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        if in_channels and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, 1, bias=False, lrelu=False, up=2)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(
        self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str, force_fp32: bool,
        fused_modconv: bool | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x (B, in_channels, R/2, R/2) or None, img (B, C, R/2, R/2) or None, ws (B, num_conv + num_torgb, w_dim)."""
        dtype = reduced_dtype(ws.device) if self.use_fp16 and not force_fp32 else torch.float32
        # Official: fused modulation only for inference; training scales activations (cheaper with large batches).
        # An exported graph scales them too: the fused grouped convolution's shape depends on the batch size.
        fused = not self.training and (dtype == torch.float32 or ws.shape[0] == 1) if fused_modconv is None else fused_modconv
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.conv1(self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1), next(w_iter), noise_mode, fused)
        elif self.architecture == "resnet":
            x = x.to(dtype)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode, fused)
            x = y + self.conv1(x, next(w_iter), noise_mode, fused, gain=math.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x.to(dtype), next(w_iter), noise_mode, fused), next(w_iter), noise_mode, fused)
        if img is not None:  # skip architecture: sum of upsampled toRGB outputs
            img = upsample2d(img, self.resample_filter)
        if self.num_torgb:
            y = self.torgb(x, next(w_iter), fused).float()
            img = img + y if img is not None else y
        return x, img  # (B, out_channels, R, R), (B, C, R, R) in fp32


class SynthesisNetwork(nn.Module):
    """ws (B, num_ws, w_dim) -> images (B, C, R, R): blocks from 4x4 to R x R."""

    def __init__(
        self, w_dim: int, resolution: int, img_channels: int, channel_base: int, channel_max: int,
        num_fp16_res: int, conv_clamp: float | None, architecture: str,
    ):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, 0
        resolutions = [2**i for i in range(2, int(math.log2(resolution)) + 1)]
        self.blocks = nn.ModuleList()
        for res in resolutions:
            block = SynthesisBlock(
                channels_at(res // 2, channel_base, channel_max) if res > 4 else 0, channels_at(res, channel_base, channel_max),
                w_dim, res, img_channels, is_last=res == resolution, architecture=architecture, conv_clamp=conv_clamp,
                use_fp16=res >= fp16_resolution(resolution, num_fp16_res),
            )
            self.num_ws += block.num_conv  # a block's toRGB shares the next block's first w, except the last one
            self.blocks.append(block)
        self.num_ws += self.blocks[-1].num_torgb

    def forward(self, ws: Tensor, noise_mode: str = "random", force_fp32: bool = False,
                fused_modconv: bool | None = None) -> Tensor:
        check_choice("noise_mode", noise_mode, NOISE_MODES)
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis expects ws of shape (B, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        ws, x, img, first = ws.float(), None, None, 0
        for block in self.blocks:
            x, img = block(x, img, ws.narrow(1, first, block.num_conv + block.num_torgb), noise_mode, force_fp32,
                           fused_modconv)
            first += block.num_conv
        return img


class Generator(nn.Module):
    """z (B, z_dim) [+ labels] -> images (B, C, R, R), roughly in [-1, 1]: G.mapping then G.synthesis."""

    def __init__(
        self, shape: Sequence[int], z_dim: int = 512, num_classes: int = 0, w_dim: int = 512, mapping_layers: int = 8,
        channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4, conv_clamp: float | None = 256,
        architecture: str = "skip", mapping_lr_multiplier: float = 0.01, w_avg_beta: float = 0.995,
        freeze_mapping: bool = False,
    ):
        """`freeze_mapping`: the mapping network is not trained (a common choice when fine-tuning; w_avg still moves)."""
        super().__init__()
        channels, resolution = check_image(shape)
        check_choice("generator.architecture", architecture, ARCHITECTURES)
        self.z_dim, self.num_classes, self.w_dim = z_dim, num_classes, w_dim
        self.synthesis = SynthesisNetwork(
            w_dim, resolution, channels, channel_base, channel_max, num_fp16_res, conv_clamp, architecture
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, num_classes, w_dim, self.num_ws, mapping_layers, mapping_lr_multiplier, w_avg_beta)
        self.mapping.requires_grad_(not freeze_mapping)

    def forward(
        self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
        noise_mode: str = "random", force_fp32: bool = False, fused_modconv: bool | None = None,
    ) -> Tensor:
        ws = self.mapping(z, labels, truncation_psi, truncation_cutoff)  # (B, num_ws, w_dim)
        return self.synthesis(ws, noise_mode, force_fp32, fused_modconv)


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator: (fromRGB +) two 3x3 convs, the second halving the size; residual if 'resnet'."""

    def __init__(
        self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int,
        architecture: str, conv_clamp: float | None, use_fp16: bool,
    ):
        super().__init__()
        self.in_channels, self.architecture, self.use_fp16 = in_channels, architecture, use_fp16
        if in_channels == 0 or architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, down=2, conv_clamp=conv_clamp)
        if architecture == "resnet":
            self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, lrelu=False, down=2)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor | None, img: Tensor | None, force_fp32: bool) -> tuple[Tensor, Tensor | None]:
        """x (B, tmp_channels, R, R) or None, img (B, C, R, R) or None -> x (B, out_channels, R/2, R/2), img at R/2 or None."""
        dtype = reduced_dtype(img.device if x is None else x.device) if self.use_fp16 and not force_fp32 else torch.float32
        x = x.to(dtype) if x is not None else None
        if self.in_channels == 0 or self.architecture == "skip":
            y = self.fromrgb(img.to(dtype))
            x = x + y if x is not None else y
            img = downsample2d(img.to(dtype), self.resample_filter) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5)), img
        return self.conv1(self.conv0(x)), img


class DiscriminatorEpilogue(nn.Module):
    """4x4 features (B, C, 4, 4) -> minibatch std, conv, two FC layers -> logits (B,), projected on the label map if any."""

    def __init__(
        self, in_channels: int, cmap_dim: int, img_channels: int, architecture: str,
        mbstd_group_size: int | None, mbstd_num_channels: int, conv_clamp: float | None,
    ):
        super().__init__()
        self.architecture, self.cmap_dim = architecture, cmap_dim
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        if architecture == "skip":
            self.fromrgb = Conv2dLayer(img_channels, in_channels, 1)  # official: no clamp on this one
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, conv_clamp=conv_clamp)
        self.fc = FullyConnected(in_channels * 4 * 4, in_channels, lrelu=True)
        self.out = FullyConnected(in_channels, cmap_dim or 1)

    def forward(self, x: Tensor, img: Tensor | None, cmap: Tensor | None) -> Tensor:
        x = x.float()  # the epilogue always runs in fp32
        if self.architecture == "skip":
            x = x + self.fromrgb(img.float())
        if self.mbstd_num_channels:
            x = minibatch_std(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.out(self.fc(self.conv(x).flatten(1)))  # (B, cmap_dim or 1)
        if self.cmap_dim:  # projection discriminator: <features, label map> / sqrt(cmap_dim)
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x.flatten()


class Discriminator(nn.Module):
    """Images (B, C, R, R) [+ labels] -> logits (B,): blocks from R x R down to 8x8, then the 4x4 epilogue."""

    def __init__(
        self, shape: Sequence[int], num_classes: int = 0, channel_base: int = 32768, channel_max: int = 512,
        architecture: str = "resnet", mbstd_group_size: int | None = 4, mbstd_num_channels: int = 1,
        num_fp16_res: int = 4, conv_clamp: float | None = 256, cmap_dim: int | None = None, mapping_layers: int = 8,
        freeze: int = 0,
    ):
        """`freeze`: FreezeD, the first `freeze` blocks (from the input's resolution down) not trained."""
        super().__init__()
        channels, resolution = check_image(shape)
        check_choice("discriminator.architecture", architecture, ARCHITECTURES)
        self.num_classes = num_classes
        width = lambda res: channels_at(res, channel_base, channel_max)  # noqa: E731
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(
                width(res) if res < resolution else 0, width(res), width(res // 2), channels, architecture, conv_clamp,
                use_fp16=res >= fp16_resolution(resolution, num_fp16_res),
            )
            for res in [2**i for i in range(int(math.log2(resolution)), 2, -1)]
        )
        cmap_dim = (width(4) if cmap_dim is None else cmap_dim) if num_classes else 0
        if num_classes:
            self.mapping = MappingNetwork(0, num_classes, cmap_dim, num_ws=None, num_layers=mapping_layers, w_avg_beta=None)
        self.epilogue = DiscriminatorEpilogue(
            width(4), cmap_dim, channels, architecture, mbstd_group_size, mbstd_num_channels, conv_clamp
        )
        freeze_blocks(list(self.blocks), freeze, "stylegan2")  # the epilogue (and label mapping) always train

    def forward(self, img: Tensor, labels: Tensor | None = None, force_fp32: bool = False) -> Tensor:
        x = None
        for block in self.blocks:
            x, img = block(x, img, force_fp32)
        cmap = self.mapping(None, labels) if self.num_classes else None  # (B, cmap_dim)
        return self.epilogue(x, img, cmap)  # (B,) logits
