"""The schema of every option gantrain ships in its config groups (data, model and its networks, loss, optim, logger,
metrics; the trainer's is training/settings.py's TrainerConfig) and of the root config. config/schema.py checks them.

Field names are the keys of the node (the target's arguments); tests/unit/config/test_schemas.py holds each schema to
its target's signature. Choices come from the code that uses them, not from a copy.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from gantrain.config.schema import schema_for
from gantrain.fields import (all_of, at_least, auto_or_bool, auto_or_positive, between, existing, one_of, positive,
                             rule)
from gantrain.models.layers import NORMS
from gantrain.models.stylegan2 import ARCHITECTURES as STYLEGAN2_ARCHITECTURES
from gantrain.systems.ada import OPS
from gantrain.systems.diffaugment import POLICIES
from gantrain.systems.latents import DISTRIBUTIONS
from gantrain.training.objective import METRICS
from gantrain.training.settings import TrainerConfig
from gantrain.device import is_device_name

def device(default: str) -> Any:
    return rule(default, is_device_name, "auto, cpu, cuda, cuda:N or mps")


# ------------------------------------------------------------------ data
@schema_for("gantrain.data.digits.digits")
@dataclass
class DigitsData:
    image_size: int = positive(32)
    hflip: bool = False
    limit: Optional[int] = positive(None)  # only this many images (gantrain.data.base.take) ...
    limit_seed: int = at_least(0, 0)  # ... drawn with this seed


@schema_for("gantrain.data.torchvision_sets.mnist", "gantrain.data.torchvision_sets.fashion_mnist",
            "gantrain.data.torchvision_sets.cifar10")
@dataclass
class TorchvisionData:
    root: str = "data"  # its files are looked for when the data is read (download=true fetches them there)
    train: bool = True
    download: bool = False
    image_size: int = positive(28)
    hflip: bool = False
    in_memory: bool = True
    workers: int = at_least(2, 0)
    limit: Optional[int] = positive(None)
    limit_seed: int = at_least(0, 0)


@schema_for("gantrain.data.folder.folder", "gantrain.data.folder.celeba")
@dataclass
class FolderData:
    root: str = existing("data/celeba")
    image_size: int = positive(64)
    channels: int = one_of(3, (1, 3))
    in_memory: Any = auto_or_bool("auto")
    memory_limit_mb: Any = auto_or_positive("auto")
    hflip: bool = False
    workers: int = at_least(2, 0)
    download: bool = False  # celeba only: CelebA cannot be fetched automatically; the error says where to get it
    name: str = "folder"


@schema_for("gantrain.data.unpaired.unpaired")
@dataclass
class UnpairedData:
    root: str = existing("data")
    image_size: int = positive(256)
    load_size: Optional[int] = positive(None)
    channels: int = one_of(3, (1, 3))
    hflip: bool = True
    workers: int = at_least(2, 0)


@schema_for("gantrain.data.toy.gaussian2d")
@dataclass
class GaussianData:
    n: int = positive(1000)
    seed: int = at_least(0, 0)


# ------------------------------------------------------------------ model: systems and their networks
@schema_for("gantrain.systems.gan.GAN")
@dataclass
class GANModel:
    z_dim: int = positive(100)
    z_dist: str = one_of("normal", DISTRIBUTIONS)
    conditional: bool = False
    spectral_norm: bool = False
    ema: Optional[float] = between(None, 0, 1)
    ema_start: int = at_least(0, 0)
    diffaugment: Any = rule(None, lambda v: set(v.split(",") if isinstance(v, str) else v) <= set(POLICIES),
                            "null or a list of " + ", ".join(POLICIES))
    ada: Optional[float] = rule(None, lambda v: 0 < v < 1, "a number in (0, 1)")
    ada_kimg: float = positive(20)
    ada_interval: int = positive(4)
    ada_ops: str = rule("blit,geom,color", lambda v: set(v.split(",")) <= set(OPS), "a comma list of " + ",".join(OPS))
    generator: Any = None
    discriminator: Any = None


@schema_for("gantrain.systems.cyclegan.CycleGAN")
@dataclass
class CycleGANModel:
    lambda_cycle: float = at_least(10.0, 0)
    lambda_identity: float = at_least(0.5, 0)
    adversarial_weight: float = positive(2.0)
    pool_size: int = at_least(50, 0)
    generator: Any = None
    discriminator: Any = None


def freeze() -> Any:
    """A discriminator's FreezeD count (gantrain.models.layers.freeze_blocks checks it against its blocks)."""
    return at_least(0, 0)


@schema_for("gantrain.systems.stylegan2.StyleGAN2")
@dataclass
class StyleGAN2Model:
    z_dim: int = positive(512)
    conditional: bool = False
    style_mixing: float = between(0.9, 0, 1, high_included=True)
    pl_weight: float = at_least(2.0, 0)
    pl_every: int = positive(4)
    pl_decay: float = rule(0.01, lambda v: 0 < v <= 1, "a number in (0, 1]")
    pl_batch_shrink: int = positive(2)
    ema_kimg: Optional[float] = positive(10.0)
    ema_rampup: Optional[float] = positive(None)
    ada: Optional[float] = rule(0.6, lambda v: 0 < v < 1, "a number in (0, 1)")
    ada_kimg: float = positive(500)
    ada_interval: int = positive(4)
    ada_ops: str = rule("blit,geom,color", lambda v: set(v.split(",")) <= set(OPS), "a comma list of " + ",".join(OPS))
    generator: Any = None
    discriminator: Any = None


@schema_for("gantrain.models.stylegan2.Generator")
@dataclass
class StyleGAN2Generator:
    w_dim: int = positive(512)
    mapping_layers: int = positive(8)
    channel_base: int = positive(32768)
    channel_max: int = positive(512)
    num_fp16_res: int = at_least(4, 0)
    conv_clamp: Optional[float] = positive(256)
    architecture: str = one_of("skip", STYLEGAN2_ARCHITECTURES)
    mapping_lr_multiplier: float = positive(0.01)
    w_avg_beta: float = between(0.995, 0, 1)
    freeze_mapping: bool = False


@schema_for("gantrain.models.stylegan2.Discriminator")
@dataclass
class StyleGAN2Discriminator:
    channel_base: int = positive(32768)
    channel_max: int = positive(512)
    architecture: str = one_of("resnet", STYLEGAN2_ARCHITECTURES)
    mbstd_group_size: Optional[int] = positive(4)
    mbstd_num_channels: int = at_least(1, 0)
    num_fp16_res: int = at_least(4, 0)
    conv_clamp: Optional[float] = positive(256)
    cmap_dim: Optional[int] = positive(None)
    mapping_layers: int = positive(8)
    freeze: int = freeze()


@schema_for("gantrain.models.dcgan.Generator")
@dataclass
class DCGANNetwork:
    width: int = positive(64)
    norm: str = one_of("batch", NORMS)


@schema_for("gantrain.models.dcgan.Discriminator")
@dataclass
class DCGANDiscriminator(DCGANNetwork):
    freeze: int = freeze()


@schema_for("gantrain.models.resnet.Generator")
@dataclass
class ResNetNetwork:
    width: int = positive(128)


@schema_for("gantrain.models.resnet.Discriminator")
@dataclass
class ResNetDiscriminator(ResNetNetwork):
    freeze: int = freeze()


@schema_for("gantrain.models.dcgan_keras.Generator")
@dataclass
class KerasDCGANNetwork:
    capacity: int = positive(16)


@schema_for("gantrain.models.dcgan_keras.Discriminator")
@dataclass
class KerasDCGANDiscriminator(KerasDCGANNetwork):
    freeze: int = freeze()


@schema_for("gantrain.models.mlp.Generator")
@dataclass
class MLPGenerator:
    hidden: int = positive(1024)


@schema_for("gantrain.models.mlp.Discriminator")
@dataclass
class MLPDiscriminator:
    hidden: int = positive(256)
    norm: str = one_of("none", NORMS)
    freeze: int = freeze()  # refused above 0: no blocks


@schema_for("gantrain.models.cyclegan.ResnetGenerator")
@dataclass
class CycleGANGenerator:
    width: int = positive(64)
    n_blocks: int = positive(9)
    norm: str = one_of("instance", NORMS)


@schema_for("gantrain.models.cyclegan.PatchDiscriminator")
@dataclass
class CycleGANDiscriminator:
    width: int = positive(64)
    n_layers: int = positive(3)
    norm: str = one_of("instance", NORMS)


@schema_for("gantrain.models.infogan.Generator")
@dataclass
class InfoGANGenerator:
    hidden: int = positive(1024)
    width: int = positive(64)


@schema_for("gantrain.models.infogan.Discriminator")
@dataclass
class InfoGANDiscriminator:
    width: int = positive(32)
    freeze: int = freeze()


@schema_for("gantrain.models.mlp.BNGenerator")
@dataclass
class BNMLPGenerator:
    width: int = positive(256)


@schema_for("gantrain.models.mlp.BNDiscriminator")
@dataclass
class BNMLPDiscriminator(BNMLPGenerator):
    freeze: int = freeze()  # refused above 0: no blocks


@schema_for("gantrain.models.cgan.Generator", "gantrain.models.toy.Generator")
@dataclass
class FixedNetwork:
    """Networks sized by the data alone: they take no keys."""


@schema_for("gantrain.models.cgan.Discriminator", "gantrain.models.toy.Discriminator")
@dataclass
class FixedDiscriminator:
    """Discriminators sized by the data alone: only FreezeD's count (refused above 0 by those without blocks)."""

    freeze: int = freeze()


# ------------------------------------------------------------------ loss
@schema_for("gantrain.systems.losses.Hinge", "gantrain.systems.losses.Wasserstein")
@dataclass
class Loss:
    r1: float = at_least(0.0, 0)
    r1_every: int = positive(1)
    gp: float = at_least(0.0, 0)
    clip: Optional[float] = positive(None)


@schema_for("gantrain.systems.losses.BCE", "gantrain.systems.losses.LSGAN", "gantrain.systems.losses.Minimax")
@dataclass
class LabelledLoss(Loss):
    real_label: float = rule(1.0, lambda v: 0 < v <= 1, "a number in (0, 1] (< 1: one-sided label smoothing)")


# ------------------------------------------------------------------ optim
def betas() -> Any:
    return rule([0.5, 0.999], lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)")


@schema_for(open_keys=True)
@dataclass
class OptimGroup:
    """The group's shared settings, which its generator and discriminator nodes follow (${..lr})."""

    lr: float = positive(2e-4)
    beta1: float = between(0.5, 0, 1)
    beta2: float = between(0.999, 0, 1)
    betas: List[float] = betas()
    momentum: float = at_least(0.0, 0)


@schema_for("torch.optim.Adam")
@dataclass
class Adam:
    lr: float = positive(1e-3)
    betas: List[float] = betas()
    eps: float = positive(1e-8)
    weight_decay: float = at_least(0.0, 0)
    amsgrad: bool = False
    foreach: Optional[bool] = None
    maximize: bool = False
    capturable: bool = False
    differentiable: bool = False
    fused: Optional[bool] = None
    decoupled_weight_decay: bool = False


@schema_for("torch.optim.RMSprop")
@dataclass
class RMSprop:
    lr: float = positive(1e-2)
    alpha: float = between(0.99, 0, 1)
    eps: float = positive(1e-8)
    weight_decay: float = at_least(0.0, 0)
    momentum: float = at_least(0.0, 0)
    centered: bool = False
    capturable: bool = False
    foreach: Optional[bool] = None
    maximize: bool = False
    differentiable: bool = False


@schema_for("torch.optim.SGD")
@dataclass
class SGD:
    lr: float = positive(1e-3)
    momentum: float = at_least(0.0, 0)
    dampening: float = at_least(0.0, 0)
    weight_decay: float = at_least(0.0, 0)
    nesterov: bool = False
    maximize: bool = False
    foreach: Optional[bool] = None
    differentiable: bool = False
    fused: Optional[bool] = None


# ------------------------------------------------------------------ logger, metrics
@schema_for("gantrain.training.loggers.RunLogger")
@dataclass
class TensorBoardLogger:
    png: bool = True
    gif: bool = True
    flush_secs: int = positive(30)
    max_gif_frames: int = positive(100)
    tensorboard: bool = True  # false: the run folder's pictures only (a list of loggers whose numbers go elsewhere)


@schema_for("gantrain.training.tracking.MlflowLogger")
@dataclass
class MlflowLogger:
    tracking_uri: Optional[str] = None  # None: mlflow.db in store_dir (the sweep's folder) or the run's
    experiment: Optional[str] = None
    store_dir: Optional[str] = None
    files: bool = True


@schema_for("gantrain.training.loggers.Loggers")
@dataclass
class Loggers:
    loggers: List[Dict[str, Any]] = field(default_factory=list)  # logger nodes, each checked by its own schema


@schema_for("gantrain.metrics.evaluator.Evaluator")
@dataclass
class Metrics:
    metrics: List[str] = all_of(["fid", "kid", "is", "pr"], METRICS)
    extractor: str = one_of("classifier", ("classifier", "inception"))
    num_samples: int = positive(10000)
    real_samples: int = positive(50000)
    batch_size: int = positive(500)
    inception_weights: Optional[str] = existing(None, "file")
    kid_subsets: int = positive(100)
    kid_subset_size: int = positive(1000)
    is_splits: int = positive(10)
    classifier_epochs: Any = auto_or_positive("auto")
    device: str = device("auto")
    seed: int = at_least(0, 0)


@schema_for(open_keys=True)
@dataclass
class RunConfig:
    """The root of `gantrain`'s config: its own keys, and the groups whose nodes have no `_target_` of their own
    (the others find their schema by target)."""

    seed: int = at_least(0, 0)
    trust_checkpoint: bool = False
    optim: OptimGroup = field(default_factory=OptimGroup)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
