"""An exponential moving average of the generator's weights, the network to sample from."""

import copy
from collections.abc import Callable

import torch
from torch import nn

from gantrain.errors import UserError

# Standing statistics from 8 batches of 128 (1,024 samples): as good as 10,000 in docs/ema_bn_study.md, and
# cheap enough to redo before every grid. A fixed seed: the same weights always get the same statistics.
STANDING_BATCHES, STANDING_BATCH, STANDING_SEED = 8, 128, 0

Forward = Callable[[nn.Module, torch.Generator, int], object]  # (network, generator, n): one batch of its samples


def norm_layers(network: nn.Module) -> list[nn.Module]:
    """The layers that keep running statistics (BatchNorm, and InstanceNorm with track_running_stats)."""
    return [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats]


@torch.no_grad()
def standing_statistics(network: nn.Module, forward: Forward, batches: int = STANDING_BATCHES,
                        batch_size: int = STANDING_BATCH, seed: int = STANDING_SEED) -> None:
    """Recompute the network's running statistics in place from its own samples: their cumulative average
    (momentum=None) over `batches` train-mode forwards of fresh inputs. The inputs come from a local
    generator, so the training's random streams are untouched and the result is deterministic."""
    norms = norm_layers(network)
    if not norms:
        return
    momenta, was_training = [m.momentum for m in norms], network.training
    generator = torch.Generator().manual_seed(seed)
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        network.train()
        for _ in range(batches):
            forward(network, generator, batch_size)
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        network.train(was_training)


class EMA(nn.Module):
    """A frozen copy of a network whose weights follow it: w <- decay * w + (1 - decay) * w_network.

    Before `start` steps the copy simply equals the network (early weights are not worth averaging).
    Buffers are copied from the network each step, but once the weights are averaged G's BatchNorm statistics
    describe G's activations, not those of the averaged weights (sampled with them, the EMA generator of cs231n_dcgan scored an FID over
    ten times worse than G's; docs/ema_bn_study.md). So before it samples, `refresh` replaces them with
    standing statistics of the averaged weights, once per update (and once after loading a checkpoint).
    """

    def __init__(self, network: nn.Module, decay: float = 0.999, start: int = 0):
        super().__init__()
        if not 0.0 < decay < 1.0:

            raise UserError(f"model.ema={decay}: the decay must be between 0 and 1 (e.g. 0.999), or null")
        self.decay, self.start = float(decay), int(start)
        self.network = copy.deepcopy(network).eval().requires_grad_(False)
        self.fresh = False  # the statistics are the averaged weights' own (not saved: a loaded EMA recomputes them)
        self.register_load_state_dict_post_hook(EMA._loaded)

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
        # A copy's statistics are the network's own, right for its weights; averaged weights need standing ones
        # (which also spares a run that never reaches `start`, such as trainer=debug's, their cost).
        self.fresh = step <= self.start

    @torch.no_grad()
    def reset(self, network: nn.Module) -> None:
        """The copy made equal to the network again (a run started from another run's G, which had no EMA)."""
        self.network.load_state_dict(network.state_dict())
        self.fresh = True  # the network's own statistics, right for its own weights

    @staticmethod
    def _loaded(module: "EMA", keys) -> None:
        module.fresh = False

    def refresh(self, forward: Forward) -> None:
        """Before sampling: standing statistics of the current averaged weights (a no-op without BatchNorm)."""
        if not self.fresh:
            standing_statistics(self.network, forward)
            self.fresh = True

    def forward(self, *args, **kwargs):
        return self.network(*args, **kwargs)
