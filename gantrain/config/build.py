"""Config -> objects: the only place that calls hydra.utils.instantiate."""

import logging
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gantrain import __version__
from gantrain.config.init_from import start_from
from gantrain.config.migration import migrate_config
from gantrain.config.group_schemas import RunConfig
from gantrain.config.schema import TrainerConfig, trainer_settings, validate
from gantrain.config.trust import check_saved_config
from gantrain.data import Data
from gantrain.device import emulates_bf16, resolve_device
from gantrain.errors import UserError
from gantrain.models.layers import has_batch_norm, minibatch_std_group
from gantrain.systems.base import System
from gantrain.training import distributed
from gantrain.training.checkpoint import load_system_weights
from gantrain.training.trainer import Trainer

log = logging.getLogger(__name__)


def instantiate(node, **kwargs):
    """hydra.utils.instantiate, but a UserError raised by the target reaches the CLI as itself."""
    try:
        return hydra_instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, UserError):
            raise cause from None
        if isinstance(cause, TypeError) and "argument" in str(cause):  # a key the target does not take
            where = node._get_full_key(None) if isinstance(node, DictConfig) else "the config"
            raise UserError(f"{where}: {cause} (an experiment preset or override set a key this option does not "
                            f"have; remove it or pick the matching option)") from None
        raise


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_data(cfg: DictConfig) -> Data:
    return instantiate(cfg.data)


def build_system(cfg: DictConfig, shape: tuple[int, ...], num_classes: int = 0) -> System:
    """Networks get the data's sample shape (generators also z_dim; conditional ones num_classes) at build
    time; the system class gets them, the loss and every other key of cfg.model. `System.networks` says
    which argument is built from which config node, so a system with two generators (CycleGAN) builds
    the `generator` node twice."""
    model = cfg.model
    system_class = get_class(model._target_)
    if not issubclass(system_class, System):
        raise UserError(f"model._target_={model._target_} is not a gantrain System: subclass "
                        f"gantrain.systems.base.System (docs/architecture.md)")
    conditional = bool(model.get("conditional", False))
    if conditional and num_classes <= 0:
        raise UserError("model.conditional=true needs labelled data (class sub-folders, mnist, cifar10, ...): "
                        "pick such a data set or set model.conditional=false")
    networks = {}
    for argument, node in system_class.networks.items():
        extra = {"z_dim": model.z_dim} if node == "generator" and "z_dim" in model else {}
        if conditional:
            extra["num_classes"] = num_classes
        networks[argument] = instantiate(model[node], shape=list(shape), **extra)
    options = {k: v for k, v in model.items() if k not in set(system_class.networks.values()) and not k.startswith("_")}
    if conditional:
        options["num_classes"] = num_classes
    return system_class(**networks, loss=instantiate(cfg.loss), **options)


def check_config(cfg: DictConfig) -> None:
    """Every value checked against its schema before anything is built (config/schema.py): one line, the first
    problem."""
    validate(cfg, RunConfig)


def build_trainer(cfg: DictConfig, run_dir: str | Path, meta: dict | None = None, hparams: dict | None = None,
                  report: Callable[[int, float], bool] | None = None) -> Trainer:
    """Everything a run needs, seeded by cfg.seed before any weight is drawn. Every checkpoint records the
    resolved config, the groups chosen (when the caller knows them) and the gantrain version, so a run built
    here, from the CLI or not, can be sampled, evaluated and resumed. `report`: a search trial's callback for
    each evaluation (gantrain.search.pruning), True to prune."""
    check_config(cfg)
    settings = trainer_settings(cfg.trainer)  # typed and range-checked before anything is built
    meta = {"config": OmegaConf.to_container(cfg, resolve=True), "choices": {}, **(meta or {}),
            "gantrain_version": __version__}
    seed_everything(cfg.seed)
    data = build_data(cfg)
    system = build_system(cfg, data.shape, data.num_classes)
    check_data_fits(system, data, cfg)
    check_penalties_fit(settings, cfg, system)
    check_grad_accum_fits(settings, system)
    warn_of_slow_bf16(settings)
    if settings.init_from and not settings.resume:  # a resumed run continues from its own checkpoint instead
        meta["init_from"] = start_from(cfg, system, data.shape)
    # only rank 0 evaluates under torchrun: the other ranks need no classifier or real statistics
    evaluator = build_evaluator(cfg, data) if settings.eval_every and distributed.is_main() else None
    return Trainer(
        system, data, settings,
        make_opt_g=instantiate(cfg.optim.generator), make_opt_d=instantiate(cfg.optim.discriminator),
        make_logger=instantiate(cfg.logger), run_dir=run_dir, meta=meta, hparams=hparams, seed=cfg.seed,
        evaluator=evaluator, report=report,
    )


def build_evaluator(cfg: DictConfig, data: Data):
    """The metrics of cfg.metrics against the training data (its test split too, for tstr)."""
    test_data = build_test_split(cfg.data) if "tstr" in cfg.metrics.metrics else None
    return instantiate(cfg.metrics)(data=data, test_data=test_data)


def build_test_split(data_cfg: DictConfig) -> Data | None:
    """The held-out split of a data config that has one (`train: true|false`), else None."""
    if "train" not in data_cfg:
        return None
    test_cfg = data_cfg.copy()
    test_cfg.train = False
    if "limit" in test_cfg:  # data.limit shrinks what a run trains on; the held-out split stays whole
        test_cfg.limit = None
    return instantiate(test_cfg)


def check_data_fits(system: System, data: Data, cfg: DictConfig) -> None:
    """A CycleGAN needs two domains (A, B) per batch, the plain GAN one: refuse the wrong pairing."""
    if set(system.batch_keys) == set(data.batch_keys):
        return
    model = cfg.model._target_.rsplit(".", 1)[-1]
    if "A" in system.batch_keys:
        raise UserError(f"{model} translates between two image domains; data={data.name} has one: use "
                        f"data=unpaired data.root=<folder with trainA/ and trainB/> (see experiment=cyclegan)")
    raise UserError(f"data={data.name} holds two unpaired domains, which only model=cyclegan trains on: use "
                    f"experiment=cyclegan, or pick a single-domain data set")


def critics(system: System) -> list[nn.Module]:
    """The trained networks D's optimizer updates: what an input-gradient penalty differentiates twice."""
    d_params = {id(p) for p in system.d_parameters()}
    return [net for net in system.trained_networks() if any(id(p) in d_params for p in net.parameters())]


def check_penalties_fit(settings: TrainerConfig, cfg: DictConfig, system: System) -> None:
    """A gradient penalty or R1 needs a double backward through the critic, which torch.compile (aot_autograd)
    and SyncBatchNorm (pytorch issue 61222) do not support: refused in one line instead of a crash on the GPU."""
    penalties = [f"loss.{key}" for key in ("gp", "r1") if OmegaConf.select(cfg, f"loss.{key}", default=0)]
    twice = penalties + ["model.pl_weight"] * bool(OmegaConf.select(cfg, "model.pl_weight", default=0))  # StyleGAN2's G
    if settings.compile and twice:
        raise UserError(f"trainer.compile=true cannot compile networks that need double backward "
                        f"({' / '.join(twice)}): drop trainer.compile or set the penalty to 0")
    batch_norm = any(has_batch_norm(net) for net in critics(system))
    if settings.sync_bn and "loss.r1" in penalties and batch_norm:
        raise UserError("trainer.sync_bn=true cannot synchronise the BatchNorm of a critic trained with loss.r1 "
                        "(SyncBatchNorm is not twice differentiable): drop trainer.sync_bn, or set "
                        "model.discriminator.norm=layer (or none, instance)")
    if settings.amp_dtype == torch.float16 and "loss.r1" in penalties and batch_norm:  # reproduced under CPU autocast
        raise UserError("trainer.amp=fp16 with loss.r1 on a BatchNorm critic gives NaN gradients (BatchNorm's double "
                        "backward overflows in half precision): use trainer.amp=bf16, or set "
                        "model.discriminator.norm=layer (or none, instance)")


def warn_of_slow_bf16(settings: TrainerConfig) -> None:
    """Presets ask for bf16 where it was measured faster; on a CPU that emulates it, fp32 is faster."""
    if settings.amp_dtype == torch.bfloat16 and emulates_bf16(resolve_device(settings.device)):
        log.warning("trainer.amp=bf16: this CPU has no bf16 instructions (AVX512-BF16 or AMX), so autocast emulates "
                    "them and trains slower than fp32; add trainer.amp=false to train faster here")


def check_grad_accum_fits(settings: TrainerConfig, system: System) -> None:
    """trainer.grad_accum needs a system whose losses add up over micro-batches, and micro-batches at least as large
    as any minibatch standard deviation group of its networks (which would otherwise shrink to the micro-batch)."""
    if settings.grad_accum == 1:
        return
    if not system.accumulates_gradients:
        raise UserError(f"trainer.grad_accum={settings.grad_accum}: {type(system).__name__} does not split its steps "
                        f"into micro-batches; use trainer.grad_accum=1 (and a trainer.batch_size that fits)")
    micro = settings.batch_size // settings.grad_accum
    group = max(minibatch_std_group(network) for network in system.trained_networks())
    if group > micro:
        raise UserError(f"trainer.grad_accum={settings.grad_accum}: micro-batches of {micro} images "
                        f"(trainer.batch_size={settings.batch_size} / {settings.grad_accum}) are smaller than the "
                        f"discriminator's minibatch standard deviation group of {group}; lower trainer.grad_accum to "
                        f"at most {settings.batch_size // group} or raise trainer.batch_size")


def system_from_checkpoint(state: dict, trust: bool = False) -> System:
    """Rebuild a trained system from a loaded checkpoint: its saved config (in today's layout), data shape
    and weights. The config's targets are checked first (gantrain.config.trust): a checkpoint must not choose
    code to run."""
    if "config" not in state or "data_shape" not in state:
        raise UserError(f"checkpoint {state.get('path')} has no saved config: it was not written by gantrain's Trainer")
    config = migrate_config(state["config"])
    check_saved_config(config, f"checkpoint {state.get('path')}", trust)
    system = build_system(OmegaConf.create(config), tuple(state["data_shape"]), state.get("num_classes", 0))
    load_system_weights(system, state)
    return system
