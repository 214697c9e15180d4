"""CycleGAN (Zhu et al. 2017): G_AB: A -> B and G_BA: B -> A, a discriminator per domain, adversarial
plus cycle-consistency (and identity) losses, and a history pool of generated images for the
discriminators. It plugs into the same Trainer as the plain GAN: d_loss, then g_loss, per step.

The original code updates the generators first, then the discriminators on pooled fakes of that G
step. Here the G step ends by passing its fakes through the pools, and the next D step trains on the
result: the same sequence of updates, shifted by half a step, without generating the fakes twice.
"""

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.errors import UserError
from gantrain.systems.base import Batch, Stats, System
from gantrain.systems.losses import GANLoss


class ImagePool(nn.Module):
    """Shrivastava et al.'s history buffer: until it holds `size` images it returns what it is given;
    then each image is, with probability 1/2, swapped for a random stored one (which is returned).
    The stored images and the last answer are checkpointed (extra state), so a resume is exact."""

    def __init__(self, size: int = 50):
        super().__init__()
        if size < 0:
            raise UserError(f"model.pool_size={size}: use 0 (no pool) or a positive count (the paper's 50)")
        self.size = size
        self.images: list[Tensor] = []
        self.last: Tensor | None = None  # the answer to the latest query: what the next D step trains on
        # follows .to() even while the pool is empty: a checkpoint (read onto the CPU) is loaded after the
        # Trainer has moved the system, and its images must land where the discriminators are
        self.register_buffer("anchor", torch.empty(0), persistent=False)

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        if self.size == 0:
            self.last = images.detach()
            return self.last
        out = []
        for image in images.detach():
            if len(self.images) < self.size:
                self.images.append(image.clone())
                out.append(image)
            elif torch.rand(()) < 0.5:
                i = int(torch.randint(self.size, ()))
                out.append(self.images[i].clone())
                self.images[i] = image.clone()
            else:
                out.append(image)
        self.last = torch.stack(out)
        return self.last

    def get_extra_state(self) -> dict:
        # on the pool's device, like state_dict()'s tensors: torch.save records it, loading maps it to the CPU
        stored = torch.stack(self.images) if self.images else torch.empty(0, device=self.anchor.device)
        return {"images": stored, "last": self.last if self.last is not None else torch.empty(0, device=self.anchor.device)}

    def set_extra_state(self, state: dict) -> None:
        device = self.anchor.device  # the training device, wherever the checkpoint was read to
        self.images = [x.to(device) for x in state["images"]]
        self.last = state["last"].to(device) if state["last"].numel() else None

    def _apply(self, fn, recurse=True):  # .to(device) moves the stored images too
        self.images = [fn(x) for x in self.images]
        self.last = fn(self.last) if self.last is not None else None
        return super()._apply(fn, recurse)


class CycleGAN(System):
    """Networks by domain: D_A judges images of domain A (real A against G_BA(B)), D_B those of B."""

    networks = {"generator_ab": "generator", "generator_ba": "generator",
                "discriminator_a": "discriminator", "discriminator_b": "discriminator"}
    batch_keys = ("A", "B")
    translates = True

    def __init__(
        self, generator_ab: nn.Module, generator_ba: nn.Module, discriminator_a: nn.Module, discriminator_b: nn.Module,
        loss: GANLoss, lambda_cycle: float = 10.0, lambda_identity: float = 0.5, adversarial_weight: float = 2.0,
        pool_size: int = 50,
    ):
        super().__init__()
        if lambda_cycle < 0 or lambda_identity < 0:
            raise UserError(f"model.lambda_cycle={lambda_cycle}, model.lambda_identity={lambda_identity}: weights "
                            f"must be >= 0 (0 disables a term)")
        self.G = nn.ModuleDict({"ab": generator_ab, "ba": generator_ba})
        self.D = nn.ModuleDict({"a": discriminator_a, "b": discriminator_b})
        self.pools = nn.ModuleDict({"a": ImagePool(pool_size), "b": ImagePool(pool_size)})
        self.loss, self.lambda_cycle, self.lambda_identity = loss, lambda_cycle, lambda_identity
        self.adversarial_weight = adversarial_weight  # 2 x LSGAN's 0.5 E[(D-1)^2] = the original's MSE

    def d_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """Each discriminator on its real domain against pooled fakes of the last G step."""
        real_a, real_b = batch["A"], batch["B"]
        fake_a, fake_b = self.pools["a"].last, self.pools["b"].last
        if fake_a is None or fake_b is None:  # the first step: no G step has made fakes yet
            with torch.no_grad():
                fake_a = self.pools["a"].query(self.G["ba"](real_b))
                fake_b = self.pools["b"].query(self.G["ab"](real_a))
        d_a = self.loss.d(self.D["a"](real_a).float(), self.D["a"](fake_a.to(real_a.dtype)).float())
        d_b = self.loss.d(self.D["b"](real_b).float(), self.D["b"](fake_b.to(real_b.dtype)).float())
        loss = d_a + d_b
        return loss, {"loss/D_A": d_a.detach(), "loss/D_B": d_b.detach(), "loss/D": loss.detach()}

    def g_loss(self, batch: Batch) -> tuple[Tensor, Stats]:
        """Adversarial terms through the (frozen) discriminators, L1 cycle terms, L1 identity terms."""
        real_a, real_b = batch["A"], batch["B"]
        fake_b, fake_a = self.G["ab"](real_a), self.G["ba"](real_b)
        rec_a, rec_b = self.G["ba"](fake_b), self.G["ab"](fake_a)
        g_ab = self.adversarial_weight * self.loss.g(self.D["b"](fake_b).float())
        g_ba = self.adversarial_weight * self.loss.g(self.D["a"](fake_a).float())
        cycle = self.lambda_cycle * (F.l1_loss(rec_a.float(), real_a.float()) + F.l1_loss(rec_b.float(), real_b.float()))
        loss = g_ab + g_ba + cycle
        stats = {"loss/G_AB": g_ab.detach(), "loss/G_BA": g_ba.detach(), "loss/cycle": cycle.detach()}
        if self.lambda_identity > 0:  # G_AB(B) should be B and G_BA(A) should be A (keeps colours)
            identity = self.lambda_cycle * self.lambda_identity * (
                F.l1_loss(self.G["ab"](real_b).float(), real_b.float()) + F.l1_loss(self.G["ba"](real_a).float(), real_a.float()))
            loss = loss + identity
            stats["loss/identity"] = identity.detach()
        stats["loss/G"] = loss.detach()
        self.pools["a"].query(fake_a)  # what the next D step sees
        self.pools["b"].query(fake_b)
        return loss, stats

    def progress(self, values: dict[str, float]) -> str:
        line = super().progress(values)
        return line + (f"  cycle {values['loss/cycle']:.4f}" if "loss/cycle" in values else "")

    # ---------------------------------------------------------------- grids and translation
    def fixed_inputs(self, n: int, seed: int, data) -> dict[str, Tensor]:
        """8 images per domain (the test split's when there is one), kept in the checkpoint."""
        return data.fixed_batch(8, seed)

    @torch.no_grad()
    def translate(self, images: Tensor, direction: str = "AtoB") -> Tensor:
        """Images in [-1, 1] through G_AB (AtoB) or G_BA (BtoA), in eval mode."""
        network = self.G["ab" if direction == "AtoB" else "ba"]
        was_training = network.training
        network.eval()
        try:
            return network(images.to(self.device)).float()
        finally:
            network.train(was_training)

    def export_module(self, direction: str = "AtoB") -> nn.Module:
        """A copy of G_AB (AtoB) or G_BA (BtoA) in eval mode: forward(images) -> images, as translate() runs it."""
        if direction not in ("AtoB", "BtoA"):
            raise UserError(f"direction={direction}: use AtoB (G_AB) or BtoA (G_BA)")
        return copy.deepcopy(self.G["ab" if direction == "AtoB" else "ba"]).eval()

    @torch.no_grad()
    def preview(self, fixed: dict[str, Tensor]) -> Tensor:
        """Six rows of 8: real A | fake B | reconstructed A | real B | fake A | reconstructed B."""
        real_a, real_b = fixed["A"].to(self.device), fixed["B"].to(self.device)
        fake_b, fake_a = self.translate(real_a, "AtoB"), self.translate(real_b, "BtoA")
        rec_a, rec_b = self.translate(fake_b, "BtoA"), self.translate(fake_a, "AtoB")
        return torch.cat([real_a, fake_b, rec_a, real_b, fake_a, rec_b]).float()

    def checkpoint_modules(self) -> dict[str, nn.Module]:
        return {"generator": self.G, "discriminator": self.D, "pools": self.pools}

    def pretrained_modules(self) -> dict[str, nn.Module]:
        """The four networks; a new run's image pools start empty."""
        return {"generator": self.G, "discriminator": self.D}

    def g_parameters(self):
        return self.G.parameters()

    def d_parameters(self):
        return self.D.parameters()

    def trained_networks(self) -> list[nn.Module]:
        return [*self.G.values(), *self.D.values()]
