"""The plain and conditional GAN system: one generator, one discriminator, an adversarial loss on D's logits.

Options, all plain config keys: class conditioning, spectral norm on D, an EMA of G, DiffAugment, adaptive
discriminator augmentation (ADA), and the loss's penalties (WGAN weight clipping and gradient penalty, lazy R1).
"""

import copy

import torch
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.models.layers import has_batch_norm
from gantrain.systems import latents
from gantrain.systems.ada import ADA, check_settings, parse_ops
from gantrain.systems.base import Batch, Stats, System
from gantrain.systems.diffaugment import diff_augment, parse_policy
from gantrain.systems.ema import EMA
from gantrain.systems.losses import GANLoss
from gantrain.systems.penalties import gradient_penalty, r1_penalty

SPECTRAL_NORM_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)


def add_spectral_norm(network: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al.) on every weight layer of a network, as SNGAN's D has. A frozen layer
    (FreezeD) keeps its power-iteration vectors too, so its normalised weight stays the one it was loaded with."""
    for module in list(network.modules()):
        if isinstance(module, SPECTRAL_NORM_LAYERS):
            trained = module.weight.requires_grad
            nn.utils.parametrizations.spectral_norm(module)
            if not trained:
                module.parametrizations.weight[0].n_power_iterations = 0
    return network


class GAN(System):
    """G maps noise z (B, z_dim) (and labels) to samples; D maps samples (and labels) to logits (B,)."""

    networks = {"generator": "generator", "discriminator": "discriminator"}  # argument -> cfg.model node
    batch_keys = ("real",)  # what it trains on: one image domain (and labels, when conditional)
    draws_samples = True
    accumulates_gradients = True  # each loss is a mean over the batch's samples: micro-batches add up (grad_accum)

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, loss: GANLoss, z_dim: int, z_dist: str = "normal",
        conditional: bool = False, num_classes: int = 0, spectral_norm: bool = False,
        ema: float | None = None, ema_start: int = 0, diffaugment: str | None = None,
        ada: float | None = None, ada_kimg: float = 20, ada_interval: int = 4, ada_ops: str = "blit,geom,color",
    ):
        super().__init__(num_classes if conditional else 0)
        if z_dist not in latents.DISTRIBUTIONS:
            raise UserError(f"model.z_dist={z_dist}: use normal (N(0, 1)) or uniform (U[-1, 1])")
        if z_dim <= 0:
            raise UserError(f"model.z_dim={z_dim}: the latent size must be a positive integer")
        if loss.gp and has_batch_norm(discriminator):
            raise UserError("a gradient penalty needs a critic without BatchNorm (it mixes samples): set "
                            "model.discriminator.norm=layer (or none, instance)")
        self.G = generator
        self.D = add_spectral_norm(discriminator) if spectral_norm else discriminator
        # D's blocks frozen by model.discriminator.freeze (FreezeD): not trained, so not given to D's optimizer
        self._frozen_d = {id(p) for p in self.D.parameters() if not p.requires_grad}
        self.loss, self.z_dim, self.z_dist = loss, z_dim, z_dist
        self.ema = EMA(generator, ema, ema_start) if ema else None
        self.augment = parse_policy(diffaugment)
        check_settings(0.6 if ada is None else ada, ada_kimg, ada_interval)  # the others are checked even when off
        parse_ops(ada_ops)
        self.ada = ADA(ada, ada_kimg, ada_interval, ada_ops) if ada is not None else None
        self._real_batch = 0  # real images of this D step's d_loss calls: what ADA's adjustment counts
        # The last D step's fakes, in d_loss order, as (z, labels, G(z) with its graph): g_loss takes them in the same
        # order (System's call order), so G's update backpropagates through the fakes D just judged. One fake keeps
        # its graph (no second forward); micro-batches (trainer.grad_accum) keep none, and g_loss makes each again
        # from its z: one micro-batch's activations are alive at a time, and each G forward is the G step's own.
        self._fakes: list[tuple[Tensor, Tensor | None, Tensor | None]] = []
        self._d_stepped = False  # after_d_step ran since the last d_loss: the next d_loss starts a new D step

    # ---------------------------------------------------------------- inputs
    def noise(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None,
              truncation: float | None = None) -> Tensor:
        """(n, z_dim) latent codes: N(0, 1) (truncated to [-t, t] when asked), or U[-1, 1] as in CS231n."""
        return latents.draw(n, self.z_dim, self.z_dist, generator, device or self.device, truncation)

    def random_labels(self, n: int) -> Tensor | None:
        return torch.randint(0, self.num_classes, (n,), device=self.device) if self.num_classes else None

    def generate(self, z: Tensor, labels: Tensor | None, network: nn.Module | None = None) -> Tensor:
        network = network or self.G
        return network(z, labels) if self.num_classes else network(z)

    def critic(self, x: Tensor, labels: Tensor | None) -> Tensor:
        """D's logits, after DiffAugment and then ADA, each when it is on: the same pipeline for real and fake,
        in D's step and in G's (whose gradients flow back through both)."""
        if self.augment:
            x = diff_augment(x, self.augment)
        if self.ada is not None:  # after DiffAugment: ADA's p is tuned on what D finally sees
            x = self.ada(x)
        return self.D(x, labels) if self.num_classes else self.D(x)

    # ---------------------------------------------------------------- the two losses
    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """D's loss on a real batch and a fresh fake batch (detached: this step must not train G), plus penalties."""
        real = batch["real"]
        real_labels = batch.get("label") if self.num_classes else None
        fake_labels = self.random_labels(real.shape[0])
        z = self.noise(real.shape[0])
        fake = self.generate(z, fake_labels)  # keeps its graph for the G step
        self.keep_fake(z, fake_labels, fake)
        real_logits, fake_logits = self.critic(real, real_labels), self.critic(fake.detach(), fake_labels)
        loss = self.loss.d(real_logits.float(), fake_logits.float())
        stats = {
            "D(x)": self.loss.output(real_logits.detach().float()).mean(),
            "D(G(z))/before_D_step": self.loss.output(fake_logits.detach().float()).mean(),
            **self.loss.extra_stats(real_logits.float(), fake_logits.float()),
        }
        if self.ada is not None:
            self.ada.accumulate(real_logits)
            self._real_batch += real.shape[0]
            stats["aug/p"], stats["aug/rt"] = self.ada.p.clone(), self.ada.rt.clone()
        if self.loss.gp:
            penalty = gradient_penalty(lambda x: self.critic(x, real_labels).float(), real, fake, self.loss_scale)
            loss = loss + self.loss.gp * penalty
            stats["D/gradient_penalty"] = penalty.detach()
        if self.loss.r1 and self.step % self.loss.r1_every == 0:  # lazy: every r1_every steps, weighted up
            penalty = r1_penalty(lambda x: self.critic(x, real_labels).float(), real, self.loss_scale)
            loss = loss + 0.5 * self.loss.r1 * self.loss.r1_every * penalty
            stats["D/r1_penalty"] = penalty.detach()
        stats["loss/D"] = loss.detach()
        return loss, stats

    def keep_fake(self, z: Tensor, labels: Tensor | None, fake: Tensor) -> None:
        """Keep a d_loss's fakes for the G step (a new D step's first d_loss forgets the previous D step's); from a
        D step's second micro-batch on, only their noise: g_loss makes every fake again."""
        if self._d_stepped:
            self._fakes, self._d_stepped = [], False
        if self._fakes:
            self._fakes = [(z_, labels_, None) for z_, labels_, _ in self._fakes]
            fake = None
        self._fakes.append((z, labels, fake))

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """G's loss through the just-updated D, on the fakes of the last D step (the same micro-batch's)."""
        if self._fakes:
            z, labels, fake = self._fakes.pop(0)
            fake = self.generate(z, labels) if fake is None else fake
        else:  # no D step since the last G step
            labels = self.random_labels(batch["real"].shape[0])
            fake = self.generate(self.noise(batch["real"].shape[0]), labels)
        fake_logits = self.critic(fake, labels)
        loss = self.loss.g(fake_logits.float())
        return loss, {"loss/G": loss.detach(), "D(G(z))/after_D_step": self.loss.output(fake_logits.detach().float()).mean()}

    # ---------------------------------------------------------------- hooks and the progress line
    @torch.no_grad()
    def after_d_step(self) -> None:
        """WGAN's weight clipping: every trained critic parameter back into [-clip, clip]; ADA's adjustment of p."""
        self._d_stepped = True
        if self.loss.clip:
            for p in self.d_parameters():
                p.clamp_(-self.loss.clip, self.loss.clip)
        if self.ada is not None:
            self.ada.adjust(self._real_batch)
            self._real_batch = 0

    def after_g_step(self, step: int) -> None:
        if self.ema is not None:
            self.ema.update(self.G, step)

    def progress(self, values: dict[str, float]) -> str:
        """loss_D, loss_G, D(x), then D(G(z)) before / after the D step."""
        line = super().progress(values)
        if "D(x)" in values:
            line += f"  D(x) {values['D(x)']:.3f}"
        if "D(G(z))/before_D_step" in values:
            line += f"  D(G(z)) {values['D(G(z))/before_D_step']:.3f}"
            if "D(G(z))/after_D_step" in values:
                line += f" / {values['D(G(z))/after_D_step']:.3f}"
        if "aug/p" in values:
            line += f"  ada_p {values['aug/p']:.3f}"
        return line

    # ---------------------------------------------------------------- sampling
    def fixed_inputs(self, n: int, seed: int, data) -> dict[str, Tensor]:
        """The grids' inputs, drawn once per run and kept in the checkpoint: for a conditional model,
        8 per class so that each row of the 8-wide grid is one class."""
        g = torch.Generator().manual_seed(seed)
        cpu = torch.device("cpu")
        if not self.num_classes:
            return {"z": self.noise(n, g, cpu)}
        labels = torch.arange(self.num_classes).repeat_interleave(8)
        return {"z": self.noise(len(labels), g, cpu), "labels": labels}

    @torch.no_grad()
    def preview(self, fixed: dict[str, Tensor]) -> Tensor:
        """G's output (the EMA copy's when there is one) on given inputs, in eval mode, as float."""
        network = self.ema.network if self.ema is not None else self.G
        if self.ema is not None:  # BatchNorm statistics of the averaged weights, from their own samples
            self.ema.refresh(self.draw)
        was_training = network.training
        network.eval()
        try:
            labels = fixed.get("labels")
            return self.generate(fixed["z"].to(self.device), labels.to(self.device) if labels is not None else None,
                                 network).float()
        finally:
            network.train(was_training)

    def draw(self, network: nn.Module, generator: torch.Generator, n: int) -> Tensor:
        """network's output on n inputs (noise, and random classes) drawn from `generator` on the CPU."""
        cpu = torch.device("cpu")
        labels = torch.randint(0, self.num_classes, (n,), generator=generator) if self.num_classes else None
        return self.generate(self.noise(n, generator, cpu).to(self.device),
                             labels.to(self.device) if labels is not None else None, network)

    def sample(self, n: int, batch_size: int = 500, generator: torch.Generator | None = None,
               labels: Tensor | None = None, truncation: float | None = None) -> Tensor:
        """n samples on the CPU, in batches without autograd; a conditional model takes `labels` (n,),
        by default classes in turn (0, 1, ..., K-1, 0, ...); `truncation` truncates normal noise."""
        if self.num_classes and labels is None:
            labels = torch.arange(n) % self.num_classes
        cpu = torch.device("cpu")  # noise drawn on the CPU so a seeded CPU generator works for any device
        out = []
        for i in range(0, n, batch_size):  # noise drawn per batch, as gantrain always drew it: a seed keeps its samples
            k = min(batch_size, n - i)
            out.append(self.decode(self.noise(k, generator, cpu, truncation),
                                   labels[i:i + k] if self.num_classes else None, batch_size))
        return torch.cat(out)

    def decode(self, z: Tensor, labels: Tensor | None = None, batch_size: int = 500) -> Tensor:
        """G's samples (the EMA copy's when there is one) for given noise (B, z_dim), on the CPU, in batches."""
        if self.num_classes and labels is None:
            raise UserError("a conditional model needs labels for its noise")
        out = []
        for i in range(0, len(z), batch_size):
            inputs = {"z": z[i:i + batch_size]}
            if self.num_classes:
                inputs["labels"] = labels[i:i + batch_size]
            out.append(self.preview(inputs).cpu())
        return torch.cat(out)

    def export_module(self, direction: str = "AtoB") -> nn.Module:
        """A copy of the network decode() runs (the EMA copy, with its standing BatchNorm statistics, when there
        is one), in eval mode, behind forward(z) or forward(z, labels)."""
        if self.ema is not None:
            self.ema.refresh(self.draw)
        network = self.ema.network if self.ema is not None else self.G
        return Decoder(copy.deepcopy(network), self.conditional).eval()

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """The networks saved under these top-level checkpoint keys."""
        modules = {"generator": self.G, "discriminator": self.D}
        if self.ema is not None:
            modules["ema"] = self.ema
        if self.ada is not None:  # p, its statistics and the D steps since the last adjustment
            modules["ada"] = self.ada
        return modules

    def pretrained_modules(self) -> dict[str, nn.Module]:
        """What trainer.init_from takes from another run: G, D and the EMA copy (not ADA's p: it adapts afresh)."""
        return networks_and_ema(self)

    def after_init_from(self, loaded: list[str]) -> None:
        super().after_init_from(with_ema_from_g(self, loaded))

    def g_parameters(self):
        return self.G.parameters()

    def d_parameters(self):
        """D's parameters less its frozen blocks' (model.discriminator.freeze)."""
        return (p for p in self.D.parameters() if id(p) not in self._frozen_d)

    def trained_networks(self) -> list[nn.Module]:
        return [self.G, self.D]


class Decoder(nn.Module):
    """A generator on its own, as exported: forward(z) -> samples, or forward(z, labels) for a conditional one
    (a fixed signature, since exporters name the inputs after it)."""

    def __init__(self, network: nn.Module, conditional: bool):
        super().__init__()
        self.network, self.conditional = network, conditional

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.network(z, labels) if self.conditional else self.network(z)


def networks_and_ema(system) -> dict[str, nn.Module]:
    """A G/D system's modules a fine-tuned run starts from (GAN's and StyleGAN2's pretrained_modules)."""
    return {"generator": system.G, "discriminator": system.D} | ({"ema": system.ema} if system.ema is not None else {})


def with_ema_from_g(system, loaded: list[str]) -> list[str]:
    """`loaded`, with an EMA the source run did not have started as the loaded G."""
    if system.ema is not None and "ema" not in loaded:
        system.ema.reset(system.G)
        return [*loaded, "ema"]
    return loaded
