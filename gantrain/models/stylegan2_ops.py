"""StyleGAN2's building blocks: FIR-filtered resampling, modulated convolution, bias + activation, equalized layers.

The maths follows NVlabs/stylegan2-ada-pytorch (torch_utils/ops and training/networks.py); the resampling is
written for the one filter the official configurations use, [1, 3, 3, 1], as depthwise conv2d /
conv_transpose2d so that it runs fast on the CPU (the official reference path inserts zeros and convolves).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import UserError

FIR_TAPS = (1, 3, 3, 1)  # the official resample_filter: a binomial low-pass filter
LRELU_GAIN = math.sqrt(2)  # keeps the activations' second moment through leaky ReLU(0.2), as official


def fir_filter(taps: tuple[int, ...] = FIR_TAPS) -> Tensor:
    """(k, k) separable low-pass filter summing to 1 (official upfirdn2d.setup_filter for fewer than 8 taps)."""
    total = sum(taps) ** 2  # in Python: arithmetic on the meta device would import torch's compiler stack (seconds)
    return torch.tensor([[a * b / total for b in taps] for a in taps], dtype=torch.float32)


def reduced_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the `num_fp16_res` highest resolutions: fp16 on CUDA as official; bf16 elsewhere (CPUs lack fast fp16)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def _channels(x: Tensor) -> int:
    """x's channel count; a constant in a traced graph (gantrain-export), where ONNX needs every kernel's shape."""
    return int(x.shape[1]) if torch.jit.is_tracing() else x.shape[1]


def _depthwise(f: Tensor, x: Tensor, gain: float) -> Tensor:
    """(C, 1, k, k) weight applying filter `f` to each of x's C channels."""
    return (f * gain).to(x.dtype).expand(_channels(x), 1, *f.shape)


def filter2d(x: Tensor, f: Tensor, padding: int, stride: int = 1, gain: float = 1.0) -> Tensor:
    """Zero-pad, then convolve each channel with f (a true convolution, hence the flip), keep every `stride`-th pixel."""
    return F.conv2d(x, _depthwise(f.flip([0, 1]), x, gain), padding=padding, stride=stride, groups=_channels(x))


def upsample2d(x: Tensor, f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, 2H, 2W): zero insertion + filter, as one transposed conv (official upsample2d, gain 4)."""
    return F.conv_transpose2d(x, _depthwise(f, x, 4.0), stride=2, padding=f.shape[-1] // 2 - 1, groups=_channels(x))


def downsample2d(x: Tensor, f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, H/2, W/2): filter, keep every other pixel (official downsample2d)."""
    return filter2d(x, f, padding=f.shape[-1] // 2 - 1, stride=2)


def conv2d_resample(x: Tensor, w: Tensor, f: Tensor | None, up: int = 1, down: int = 1, groups: int = 1) -> Tensor:
    """Convolution with 'same' padding, optionally with FIR-filtered 2x upsampling before or downsampling after.

    The same operation orders as the official conv2d_resample, so results agree to float rounding:
    1x1 kernels resample the cheaper side; 3x3 kernels upsample with a strided transposed conv then filter,
    and downsample by filtering then a strided conv.
    """
    k = w.shape[-1]
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=k // 2, groups=groups)
    taps = f.shape[-1]
    if down == 2:
        if k == 1:
            return F.conv2d(downsample2d(x, f), w, groups=groups)
        x = filter2d(x, f, padding=k // 2 + taps // 2 - 1)  # pad so the stride-2 conv halves H and W
        return F.conv2d(x, w, stride=2, groups=groups)
    if k == 1:
        return upsample2d(F.conv2d(x, w, groups=groups), f)
    x = F.conv_transpose2d(x, _transpose_groups(w, groups), stride=2, groups=groups)  # (B, O, 2H+k-2, 2W+k-2)
    return filter2d(x, f, padding=taps // 2 - k // 2, gain=4.0)  # crops back to (2H, 2W)


def _transpose_groups(w: Tensor, groups: int) -> Tensor:
    """(G*O, I, k, k) conv weight -> (G*I, O, k, k), the layout conv_transpose2d expects per group."""
    out_channels, in_channels, kh, kw = w.shape
    w = w.reshape(groups, out_channels // groups, in_channels, kh, kw).transpose(1, 2)
    return w.reshape(groups * in_channels, out_channels // groups, kh, kw)


def bias_act(x: Tensor, b: Tensor | None, lrelu: bool, gain: float = 1.0, clamp: float | None = None) -> Tensor:
    """x + b (b along dim 1), leaky ReLU(0.2) if asked, times gain, clamped to [-clamp, clamp] (official bias_act)."""
    if b is not None:
        x = x + b.to(x.dtype).reshape(1, -1, *[1] * (x.ndim - 2))
    if lrelu:
        x = F.leaky_relu(x, 0.2)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: Tensor, eps: float = 1e-8) -> Tensor:
    """(B, D) rows scaled to unit mean square, so z's and labels' scale does not matter."""
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


def modulated_conv2d(
    x: Tensor, weight: Tensor, styles: Tensor, f: Tensor | None = None, up: int = 1,
    demodulate: bool = True, noise: Tensor | None = None, fused: bool = True,
) -> Tensor:
    """StyleGAN2's convolution: weight (O, I, k, k) scaled per sample by styles (B, I), outputs renormalised.

    fused=True folds the styles into one weight per sample and runs a grouped conv (groups=B);
    fused=False scales the activations before and after a shared conv (faster with large batches).
    x (B, I, H, W) -> (B, O, H*up, W*up), plus noise (B or 1, 1, H*up, W*up) if given.
    """
    batch, in_channels = styles.shape
    out_channels, _, k, _ = weight.shape
    if x.dtype != torch.float32 and demodulate:  # pre-normalise against fp16 overflow, as official; the maths is unchanged
        weight = weight * (1 / math.sqrt(in_channels * k * k) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    # Demodulation: 1 / ||w * s|| per (sample, output channel), computed without the (B, O, I, k, k) tensor.
    dcoefs = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt() if demodulate else None  # (B, O)
    if not fused:
        x = x * styles.to(x.dtype).reshape(batch, in_channels, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f, up=up)
        if demodulate:
            x = x * dcoefs.to(x.dtype).reshape(batch, out_channels, 1, 1)
        return x + noise.to(x.dtype) if noise is not None else x
    w = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)  # (B, O, I, k, k)
    if demodulate:
        w = w * dcoefs.reshape(batch, out_channels, 1, 1, 1)
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    x = conv2d_resample(x, w.reshape(batch * out_channels, in_channels, k, k).to(x.dtype), f, up=up, groups=batch)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    return x + noise.to(x.dtype) if noise is not None else x


def minibatch_std(x: Tensor, group_size: int | None, num_channels: int) -> Tensor:
    """(N, C, H, W) -> (N, C + F, H, W): append the std over groups of samples (F = num_channels feature groups).

    As official, group g holds samples g, g + N/G, g + 2N/G, ... (the reshape puts the group index first).
    """
    n, c, h, w = x.shape
    group = min(group_size, n) if group_size else n
    if n % group:
        raise UserError(
            f"the StyleGAN2 discriminator got a batch of {n}, which does not split into minibatch-std groups of {group}: "
            f"make the batch size a multiple of {group} or set model.discriminator.mbstd_group_size"
        )
    y = x.reshape(group, -1, num_channels, c // num_channels, h, w)  # (G, n, F, c, H, W)
    y = (y - y.mean(dim=0)).square().mean(dim=0)  # (n, F, c, H, W) variance over the group
    y = (y + 1e-8).sqrt().mean(dim=[2, 3, 4])  # (n, F) std averaged over channels and pixels
    y = y.reshape(-1, num_channels, 1, 1).repeat(group, 1, h, w)  # (N, F, H, W)
    return torch.cat([x, y], dim=1)


class FullyConnected(nn.Module):
    """Equalized-learning-rate linear layer: weights stored N(0, 1/lr_multiplier^2), scaled at run time."""

    def __init__(self, in_features: int, out_features: int, lrelu: bool = False, lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.lrelu = lrelu
        self.weight = nn.Parameter(torch.normal(0.0, 1 / lr_multiplier, size=(out_features, in_features)))  # randn / lr_multiplier
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, lrelu=True, gain=LRELU_GAIN)


class Conv2dLayer(nn.Module):
    """Equalized-learning-rate conv ('same' padding), optional 2x FIR up/downsampling, bias, leaky ReLU, clamp."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True, lrelu: bool = True,
        up: int = 1, down: int = 1, conv_clamp: float | None = None,
    ):
        super().__init__()
        self.lrelu, self.up, self.down, self.conv_clamp = lrelu, up, down, conv_clamp
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.register_buffer("resample_filter", fir_filter(), persistent=False)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample(x, w, self.resample_filter, up=self.up, down=self.down)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, self.lrelu, gain=(LRELU_GAIN if self.lrelu else 1.0) * gain, clamp=clamp)
