"""The plain GAN system: one generator, one discriminator, an adversarial loss on D's logits."""

import torch
from torch import Tensor, nn

from gantrain.data.batches import Batch
from gantrain.errors import UserError
from gantrain.losses import GANLoss

Stats = dict[str, Tensor]  # detached scalars, read by the Trainer only at the logging interval


class GAN(nn.Module):
    """G maps noise z (B, z_dim) to samples; D maps samples to logits (B,); the loss scores the logits."""

    networks = {"generator": "generator", "discriminator": "discriminator"}  # argument -> cfg.model node

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: GANLoss, z_dim: int, z_dist: str = "normal"):
        super().__init__()
        if z_dist not in ("normal", "uniform"):
            raise UserError(f"model.z_dist={z_dist}: use normal (N(0, 1)) or uniform (U[-1, 1])")
        if z_dim <= 0:
            raise UserError(f"model.z_dim={z_dim}: the latent size must be a positive integer")
        self.G, self.D, self.loss = generator, discriminator, loss
        self.z_dim, self.z_dist = z_dim, z_dist
        self._fake: Tensor | None = None  # G(z) of the last D step, reused by the G step as in seed 003

    @property
    def device(self) -> torch.device:
        return next(self.G.parameters()).device

    def noise(self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None) -> Tensor:
        """(n, z_dim) latent codes: N(0, 1), or U[-1, 1] as in CS231n."""
        device = device or self.device
        if self.z_dist == "uniform":
            return torch.rand(n, self.z_dim, generator=generator, device=device) * 2 - 1
        return torch.randn(n, self.z_dim, generator=generator, device=device)

    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """D's loss on a real batch and a fresh fake batch (detached: this step must not train G)."""
        real = batch["real"]
        fake = self.G(self.noise(real.shape[0]))  # keeps its graph: the G step backpropagates through it
        self._fake = fake
        real_logits, fake_logits = self.D(real), self.D(fake.detach())
        loss = self.loss.d(real_logits.float(), fake_logits.float())
        return loss, {
            "loss/D": loss.detach(),
            "D(x)": self.loss.output(real_logits.detach().float()).mean(),
            "D(G(z))/before_D_step": self.loss.output(fake_logits.detach().float()).mean(),
        }

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """G's loss through the just-updated D, on the fake batch of the last D step."""
        fake, self._fake = self._fake, None
        if fake is None:  # no D step since the last G step (e.g. a G-only update)
            fake = self.G(self.noise(batch["real"].shape[0]))
        fake_logits = self.D(fake)
        loss = self.loss.g(fake_logits.float())
        return loss, {"loss/G": loss.detach(), "D(G(z))/after_D_step": self.loss.output(fake_logits.detach().float()).mean()}

    def after_d_step(self) -> None:
        """Hook run after every D optimizer step (weight clipping lives here for WGAN)."""

    def after_g_step(self, step: int) -> None:
        """Hook run after every G optimizer step (an EMA of G updates here)."""

    def fixed_inputs(self, n: int, seed: int, data=None) -> dict[str, Tensor]:
        """The inputs of the progress grids, drawn once per run and kept in the checkpoint."""
        return {"z": self.noise(n, torch.Generator().manual_seed(seed), device=torch.device("cpu"))}

    @torch.no_grad()
    def preview(self, fixed: dict[str, Tensor]) -> Tensor:
        """G's output on the fixed inputs, in eval mode (BatchNorm running statistics), as float."""
        was_training = self.G.training
        self.G.eval()
        try:
            return self.G(fixed["z"].to(self.device)).float()
        finally:
            self.G.train(was_training)

    def sample(self, n: int, batch_size: int = 500, generator: torch.Generator | None = None) -> Tensor:
        """n samples on the CPU, made in batches without autograd."""
        cpu = torch.device("cpu")  # noise drawn on the CPU so a seeded CPU generator works for any device
        out = [self.preview({"z": self.noise(min(batch_size, n - i), generator, cpu)}).cpu() for i in range(0, n, batch_size)]
        return torch.cat(out)

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        """The networks saved under these top-level checkpoint keys."""
        return {"generator": self.G, "discriminator": self.D}

    def g_parameters(self):
        return self.G.parameters()

    def d_parameters(self):
        return self.D.parameters()
