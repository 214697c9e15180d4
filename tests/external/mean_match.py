"""A GAN family defined outside gantrain, as a user would add one: one System subclass here and one YAML
file (configs/model/mean_match.yaml), found with `hydra.searchpath=[file://tests/external/configs]`.

MeanMatchGAN: the configured adversarial loss, plus a term that pulls the per-pixel mean and standard
deviation of G's batch towards the real batch's (pixel-level feature matching, after Salimans et al. 2016).
"""

import torch
from torch import Tensor, nn

from gantrain.losses import GANLoss
from gantrain.systems.base import Batch, Stats, System


class MeanMatchGAN(System):
    networks = {"generator": "generator", "discriminator": "discriminator"}
    batch_keys = ("real",)
    draws_samples = True

    def __init__(self, generator: nn.Module, discriminator: nn.Module, loss: GANLoss, z_dim: int = 16,
                 match_weight: float = 1.0):
        super().__init__()
        self.G, self.D, self.loss, self.z_dim, self.match_weight = generator, discriminator, loss, z_dim, match_weight

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(n, self.z_dim, generator=generator).to(self.device)

    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        real = batch["real"]
        with torch.no_grad():
            fake = self.G(self.noise(len(real)))
        loss = self.loss.d(self.D(real).float(), self.D(fake).float())
        return loss, {"loss/D": loss.detach()}

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        real = batch["real"]
        fake = self.G(self.noise(len(real)))
        match = (fake.mean(0) - real.mean(0)).pow(2).mean() + (fake.std(0) - real.std(0)).pow(2).mean()
        adversarial = self.loss.g(self.D(fake).float())
        loss = adversarial + self.match_weight * match
        return loss, {"loss/G": loss.detach(), "match": match.detach()}

    def d_parameters(self):
        return self.D.parameters()

    def g_parameters(self):
        return self.G.parameters()

    def trained_networks(self) -> list[nn.Module]:
        return [self.G, self.D]

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.G, "discriminator": self.D}

    def fixed_inputs(self, n: int, seed: int, data) -> dict[str, Tensor]:
        return {"z": torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))}

    @torch.no_grad()
    def preview(self, fixed: dict[str, Tensor]) -> Tensor:
        return self.G(fixed["z"].to(self.device)).float()

    def progress(self, values: dict[str, float]) -> str:
        return super().progress(values) + (f"  match {values['match']:.4f}" if "match" in values else "")

    @torch.no_grad()
    def sample(self, n: int, batch_size: int = 500, generator: torch.Generator | None = None,
               labels: Tensor | None = None) -> Tensor:
        was_training = self.G.training
        self.G.eval()
        try:
            return torch.cat([self.G(self.noise(min(batch_size, n - i), generator)).float().cpu()
                              for i in range(0, n, batch_size)])
        finally:
            self.G.train(was_training)
