"""An exponential moving average of the generator's weights, the network to sample from."""

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of a network whose weights follow it: w <- decay * w + (1 - decay) * w_network.

    Before `start` steps the copy simply equals the network (early weights are not worth averaging);
    buffers (BatchNorm statistics) are copied, not averaged, as StudioGAN and mimicry do.
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, start: int = 0):
        super().__init__()
        if not 0.0 < decay < 1.0:
            from gantrain.errors import UserError

            raise UserError(f"trainer.ema={decay}: the decay must be between 0 and 1 (e.g. 0.999), or null")
        self.decay, self.start = float(decay), int(start)
        self.network = copy.deepcopy(network).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, network: nn.Module, step: int) -> None:
        """After a G step: average the weights in (or copy them, before `start`)."""
        mine, theirs = list(self.network.parameters()), list(network.parameters())
        if step <= self.start:
            torch._foreach_copy_(mine, theirs)
        else:
            torch._foreach_lerp_(mine, theirs, 1.0 - self.decay)
        for b_mine, b_theirs in zip(self.network.buffers(), network.buffers()):
            b_mine.copy_(b_theirs)

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)
