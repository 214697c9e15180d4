"""The StyleGAN2-ADA system (Karras et al. 2020): the losses and regularisers of NVlabs/stylegan2-ada-pytorch's
training/loss.py and training_loop.py, on the networks of gantrain.models.stylegan2.

One Trainer step (the official phases run Gmain, Greg, Dmain, Dreg; here D comes first, the same sequence shifted by
half a step), each fake drawn afresh with style mixing, every image D judges passed through ADA when it is on:
    d_loss        D on a real batch and a batch of fakes made without autograd (this step trains D alone)
    reg_loss(D)   lazy R1 every loss.r1_every steps, weighted by it: gamma / 2 * every * E[|dD(x)/dx|^2]
    g_loss        G through the frozen D: the loss group's G loss (loss=bce: the non-saturating logistic loss)
    reg_loss(G)   lazy path-length regularisation every pl_every steps, on batch / pl_batch_shrink fakes
    after_g_step  the EMA of G, whose half-life is ema_kimg thousand images (ramped up early with ema_rampup)
The Trainer scales both optimizers' lr and betas for their lazy steps (System.lazy_intervals). Outside training
(grids, gantrain-sample, -eval, -export) the EMA generator runs in fp32 with its constant noise (the official
generate.py's noise_mode='const'), so a seed always gives the same images and an exported file can match them.
"""

import copy
import math

import torch
import torch.distributed as dist
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.systems import latents
from gantrain.systems.ada import ADA, check_settings, parse_ops
from gantrain.systems.base import Batch, Stats, System
from gantrain.systems.ema import EMA, half_life_decay
from gantrain.systems.gan import networks_and_ema, with_ema_from_g
from gantrain.systems.losses import GANLoss
from gantrain.systems.penalties import r1_penalty


class PathLength(nn.Module):
    """Path-length regularisation (StyleGAN2): a step in w should change the image by the same amount in every
    direction and everywhere. Holds the running mean of the lengths (a buffer, so a resume continues it exactly)."""

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, images: Tensor, ws: Tensor, scale: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Penalties (B,) and lengths |J_w^T y| (B,) for images (B, C, H, W) made from ws (B, num_ws, w_dim), with
        y ~ N(0, I) / sqrt(H W); the running mean moves toward this batch's mean length (and keeps its gradient, as
        official). `scale`: the GradScaler's, as in penalties.per_sample_grad."""
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        out = (images * noise).sum()
        (grads,) = torch.autograd.grad(out if scale is None else out * scale, ws, create_graph=True)
        grads = grads if scale is None else grads / scale
        lengths = grads.square().sum(2).mean(1).sqrt()  # (B,): mean over the ws of the squared length, rooted
        mean = self.mean.lerp(lengths.mean(), self.decay)
        self.mean.copy_(mean.detach())
        return (lengths - mean).square(), lengths


class StyleGAN2(System):
    """G = mapping (z, labels -> ws) + synthesis (ws -> images); D maps images (and labels) to logits (B,)."""

    networks = {"generator": "generator", "discriminator": "discriminator"}  # argument -> cfg.model node
    batch_keys = ("real",)
    draws_samples = True
    maps_latents = True
    accumulates_gradients = True  # every loss is a mean over its batch, and g_loss makes its own fakes (grad_accum)

    def __init__(
        self, generator: nn.Module, discriminator: nn.Module, loss: GANLoss, z_dim: int = 512,
        conditional: bool = False, num_classes: int = 0, style_mixing: float = 0.9, pl_weight: float = 2.0,
        pl_every: int = 4, pl_decay: float = 0.01, pl_batch_shrink: int = 2, ema_kimg: float | None = 10.0,
        ema_rampup: float | None = None, ada: float | None = 0.6, ada_kimg: float = 500, ada_interval: int = 4,
        ada_ops: str = "blit,geom,color",
    ):
        super().__init__(num_classes if conditional else 0)
        if loss.gp or loss.clip:
            raise UserError("model=stylegan2 regularises D with R1 (loss.r1), not with a gradient penalty or weight "
                            "clipping: set loss.gp=0 and loss.clip=null (or use loss=bce)")
        self.G, self.D, self.loss, self.z_dim = generator, discriminator, loss, z_dim
        self.style_mixing, self.pl_weight, self.pl_every = float(style_mixing), float(pl_weight), int(pl_every)
        self.pl_batch_shrink, self.path_length = int(pl_batch_shrink), PathLength(pl_decay)
        self.ema_kimg, self.ema_rampup = ema_kimg, ema_rampup
        self.ema = EMA(generator, decay=None) if ema_kimg else None
        check_settings(0.6 if ada is None else ada, ada_kimg, ada_interval)
        parse_ops(ada_ops)
        self.ada = ADA(ada, ada_kimg, ada_interval, ada_ops) if ada is not None else None
        self._images = 0  # real images of this D step's d_loss calls (micro-batches with trainer.grad_accum)
        self._batch = 0  # ... of the last D step: what ADA's adjustment and the EMA count

    # ---------------------------------------------------------------- fakes and D's view of images
    def random_labels(self, n: int) -> Tensor | None:
        return torch.randint(0, self.num_classes, (n,), device=self.device) if self.num_classes else None

    def mapped(self, n: int, labels: Tensor | None) -> Tensor:
        """ws (n, num_ws, w_dim) of fresh z; with probability style_mixing, those from a random cutoff in
        [1, num_ws) on come from a second z (which leaves w_avg alone), as official run_G does."""
        z = torch.randn(n, self.z_dim, device=self.device)
        ws = self.G.mapping(z, labels)
        if self.style_mixing > 0:
            num_ws = ws.shape[1]
            cutoff = torch.randint(1, num_ws, (), device=ws.device)
            cutoff = torch.where(torch.rand((), device=ws.device) < self.style_mixing, cutoff, num_ws)
            mixed = self.G.mapping(torch.randn_like(z), labels, skip_w_avg_update=True)
            later = (torch.arange(num_ws, device=ws.device) >= cutoff).view(1, num_ws, 1)  # no host sync
            ws = torch.where(later, mixed, ws)
        return ws

    def fakes(self, n: int) -> tuple[Tensor, Tensor | None]:
        """(images (n, C, H, W), their labels or None) from G in its training mode (w_avg moves)."""
        labels = self.random_labels(n)
        return self.G.synthesis(self.mapped(n, labels)), labels

    def critic(self, images: Tensor, labels: Tensor | None) -> Tensor:
        """D's logits (B,) of images seen through ADA (when it is on), in D's step and in G's."""
        if self.ada is not None:
            images = self.ada(images)
        return self.D(images, labels).float()

    # ---------------------------------------------------------------- the losses
    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """D's loss on the real batch and as many fresh fakes (made without autograd: this step trains D alone)."""
        real = batch["real"]
        real_labels = batch.get("label") if self.num_classes else None
        self._images += real.shape[0]
        with torch.no_grad():
            fake, fake_labels = self.fakes(real.shape[0])
        real_logits, fake_logits = self.critic(real, real_labels), self.critic(fake, fake_labels)
        loss = self.loss.d(real_logits, fake_logits)
        stats = {"D(x)": self.loss.output(real_logits.detach()).mean(),
                 "D(G(z))": self.loss.output(fake_logits.detach()).mean()}
        if self.ada is not None:
            self.ada.accumulate(real_logits)
            stats["aug/p"], stats["aug/rt"] = self.ada.p.clone(), self.ada.rt.clone()
        if self.loss.r1 and self.loss.r1_every == 1:  # not lazy: R1 in every D step (the official "Dboth")
            r1, stats["D/r1_penalty"] = self.r1(real, real_labels)
            loss = loss + r1
        stats["loss/D"] = loss.detach()
        return loss, stats

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """G's loss through the just-updated (frozen) D, on a fresh batch of fakes."""
        fake, labels = self.fakes(batch["real"].shape[0])
        fake_logits = self.critic(fake, labels)
        loss = self.loss.g(fake_logits)
        stats = {"loss/G": loss.detach()}
        if self.pl_weight and self.pl_every == 1:  # not lazy: path length in every G step (the official "Gboth")
            pl, stats["G/pl_penalty"] = self.pl(batch["real"].shape[0])
            loss = loss + pl
        return loss, stats

    def lazy_intervals(self) -> dict[str, int]:
        """R1 and path length in steps of their own, as official (which corrects the optimizers whatever the weights:
        the cifar recipe's G, without path length, still learns at 0.0025 * 4/5)."""
        return {name: every for name, every in (("D", self.loss.r1_every), ("G", self.pl_every)) if every > 1}

    def reg_loss(self, network: str, batch: Batch) -> tuple[Tensor, Stats] | None:
        """The lazy step's R1 (D) or path-length (G) loss, weighted by its interval; None when its weight is 0."""
        if network == "D" and self.loss.r1:
            r1, penalty = self.r1(batch["real"], batch.get("label") if self.num_classes else None, count=True)
            return r1 * self.loss.r1_every, {"D/r1_penalty": penalty}
        if network == "G" and self.pl_weight:
            pl, penalty = self.pl(batch["real"].shape[0])
            return pl * self.pl_every, {"G/pl_penalty": penalty, "G/pl_mean": self.path_length.mean.clone()}
        return None

    def r1(self, real: Tensor, labels: Tensor | None, count: bool = False) -> tuple[Tensor, Tensor]:
        """(gamma / 2 * E[|dD(x)/dx|^2] plus D's logits times 0, the penalty): the zero term gives every weight of D a
        gradient, which DDP needs (the last layer's bias has none in the penalty). `count`: ADA counts these logits
        (official: the lazy R1 phase's real logits are reported with the main phase's)."""
        seen = []

        def critic(x: Tensor) -> Tensor:
            seen.append(self.critic(x, labels))
            return seen[-1]

        penalty = r1_penalty(critic, real, self.loss_scale)
        if count and self.ada is not None:
            self.ada.accumulate(seen[0])
        return 0.5 * self.loss.r1 * penalty + 0 * seen[0].mean(), penalty.detach()

    def pl(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """(pl_weight * E[penalty] plus the images times 0, the mean penalty) on batch / pl_batch_shrink fakes; the
        zero term gives every weight of G a gradient, as official (for DDP)."""
        n = max(batch_size // self.pl_batch_shrink, 1)
        ws = self.mapped(n, self.random_labels(n))
        if not ws.requires_grad:  # a frozen mapping network (freeze_mapping): the lengths still train synthesis
            ws = ws.detach().requires_grad_(True)
        images = self.G.synthesis(ws)
        penalties, _ = self.path_length(images, ws, self.loss_scale)
        return (images[:, 0, 0, 0] * 0 + penalties * self.pl_weight).mean(), penalties.mean().detach()

    # ---------------------------------------------------------------- after each G step, the progress line
    def after_d_step(self) -> None:
        self._batch, self._images = self._images, 0
        if self.ada is not None:
            self.ada.adjust(self._batch)

    def after_g_step(self, step: int) -> None:
        """The EMA with this step's decay: batch (all processes) images against the half-life, from the images seen
        before this step (one batch a step: the official loop's n_critic of 1)."""
        if self.ema is not None:
            batch = self._batch * (dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1)
            self.ema.update(self.G, step, half_life_decay(batch, (step - 1) * batch, self.ema_kimg, self.ema_rampup))

    def progress(self, values: dict[str, float]) -> str:
        line = super().progress(values)
        for key, name, digits in (("D(x)", "D(x)", 3), ("D(G(z))", "D(G(z))", 3), ("G/pl_mean", "pl_mean", 3),
                                  ("aug/p", "ada_p", 3)):
            if key in values:
                line += f"  {name} {values[key]:.{digits}f}"
        return line

    # ---------------------------------------------------------------- sampling
    def sampler(self) -> nn.Module:
        """The network that samples: the EMA generator when there is one."""
        return self.ema.network if self.ema is not None else self.G

    def fixed_inputs(self, n: int, seed: int, data) -> dict[str, Tensor]:
        """The grids' inputs: n latents, or 8 per class (a row each) for a conditional model."""
        g, cpu = torch.Generator().manual_seed(seed), torch.device("cpu")
        if not self.num_classes:
            return {"z": latents.draw(n, self.z_dim, "normal", g, cpu)}
        labels = torch.arange(self.num_classes).repeat_interleave(8)
        return {"z": latents.draw(len(labels), self.z_dim, "normal", g, cpu), "labels": labels}

    @torch.no_grad()
    def preview(self, fixed: dict[str, Tensor], psi: float | None = None, psi_cutoff: int | None = None) -> Tensor:
        """The sampling network's images for given inputs, in eval mode and fp32, with constant noise."""
        network = self.sampler()
        was_training = network.training
        network.eval()
        try:
            labels = fixed.get("labels")
            return network(fixed["z"].to(self.device), labels.to(self.device) if labels is not None else None,
                           truncation_psi=1.0 if psi is None else psi, truncation_cutoff=psi_cutoff,
                           noise_mode="const", force_fp32=True).float()
        finally:
            network.train(was_training)

    def sample(self, n: int, batch_size: int = 500, generator: torch.Generator | None = None,
               labels: Tensor | None = None, truncation: float | None = None, psi: float | None = None,
               psi_cutoff: int | None = None) -> Tensor:
        """n samples on the CPU; labels default to the classes in turn; `truncation` truncates z, `psi` pulls w
        toward the average w (for the first psi_cutoff ws)."""
        if self.num_classes and labels is None:
            labels = torch.arange(n) % self.num_classes
        out = []
        for i in range(0, n, batch_size):
            k = min(batch_size, n - i)
            z = latents.draw(k, self.z_dim, "normal", generator, torch.device("cpu"), truncation)
            out.append(self.decode(z, labels[i:i + k] if self.num_classes else None, batch_size, psi, psi_cutoff))
        return torch.cat(out)

    def decode(self, z: Tensor, labels: Tensor | None = None, batch_size: int = 500, psi: float | None = None,
               psi_cutoff: int | None = None) -> Tensor:
        """The sampling network's images for given z (B, z_dim) (and labels), on the CPU, in batches."""
        if self.num_classes and labels is None:
            raise UserError("a conditional model needs labels for its noise")
        out = []
        for i in range(0, len(z), batch_size):
            inputs = {"z": z[i:i + batch_size]} | ({"labels": labels[i:i + batch_size]} if self.num_classes else {})
            out.append(self.preview(inputs, psi, psi_cutoff).cpu())
        return torch.cat(out)

    def export_module(self, direction: str = "AtoB", psi: float | None = None,
                      psi_cutoff: int | None = None) -> nn.Module:
        """A copy of the sampling network behind forward(z) or forward(z, labels), psi baked in."""
        return StyleGAN2Decoder(copy.deepcopy(self.sampler()), self.conditional, psi, psi_cutoff).eval()

    # ---------------------------------------------------------------- what trains and what is saved
    def checkpoint_modules(self) -> dict[str, nn.Module]:
        modules = {"generator": self.G, "discriminator": self.D, "path_length": self.path_length}
        if self.ema is not None:
            modules["ema"] = self.ema
        if self.ada is not None:
            modules["ada"] = self.ada
        return modules

    def pretrained_modules(self) -> dict[str, nn.Module]:
        """What trainer.init_from takes from another run (or a gantrain-import run): G, D and the EMA copy."""
        return networks_and_ema(self)

    def after_init_from(self, loaded: list[str]) -> None:
        super().after_init_from(with_ema_from_g(self, loaded))

    def g_parameters(self):
        """G's parameters less the mapping network's when it is frozen (model.generator.freeze_mapping)."""
        return (p for p in self.G.parameters() if p.requires_grad)

    def d_parameters(self):
        """D's parameters less its frozen blocks' (model.discriminator.freeze)."""
        return (p for p in self.D.parameters() if p.requires_grad)

    def trained_networks(self) -> list[nn.Module]:
        """G's two halves apart (as official DDP wraps them), so that path length can differentiate synthesis
        with respect to ws while both halves' gradients are still averaged across processes; a frozen mapping
        network is not trained."""
        networks = [self.G.mapping, self.G.synthesis, self.D]
        return [net for net in networks if any(p.requires_grad for p in net.parameters())]


class StyleGAN2Decoder(nn.Module):
    """The generator as exported: forward(z) or forward(z, labels) -> images, in fp32 with constant noise, with the
    truncation psi (and cutoff) it was exported with."""

    def __init__(self, network: nn.Module, conditional: bool, psi: float | None = None, psi_cutoff: int | None = None):
        super().__init__()
        self.network, self.conditional = network, conditional
        self.psi, self.psi_cutoff = 1.0 if psi is None else float(psi), psi_cutoff

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        # modulation by scaling activations: the fused grouped convolution's graph is tied to one batch size
        return self.network(z, labels if self.conditional else None, truncation_psi=self.psi,
                            truncation_cutoff=self.psi_cutoff, noise_mode="const", force_fp32=True, fused_modconv=False)
