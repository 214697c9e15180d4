"""The GPU paths (AMP penalties, asynchronous copies, host-resident data, CUDA random state, process-group
backends), checked on the CPU where the behaviour can be reproduced there: the `meta` device, a faked torch.cuda,
CPU autocast in fp16, or by asserting which generator a call seeds. Tests that need a real GPU are skipped without
one (scripts/gpu_check.py runs those paths on a GPU machine); the torchrun (gloo) ones are in test_gpu_ddp.py."""

import logging
import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
from hydra import compose, initialize_config_module
from support import REPO
from torch import nn

import gantrain.cli  # noqa: F401  (registers the resolvers and the trainer schema)
from gantrain.config.build import build_trainer
from gantrain.data import batches as batches_module
from gantrain.data.base import StreamData
from gantrain.data.batches import LoaderBatches, MemoryBatches, fits_on_device
from gantrain.data.torchvision_sets import TensorImages
from gantrain.data.unpaired import UnpairedData
from gantrain.errors import UserError
from gantrain.metrics import extractors
from gantrain.systems.penalties import gradient_penalty, r1_penalty
from gantrain.training import distributed
from gantrain.training.checkpoint import rng_state, set_rng_state

TINY = ["trainer=debug", "model.generator.width=8", "model.discriminator.width=8", "model.ema=null", "model.ada=null", "loss.r1=0"]  # the plain tiny GAN (conftest.TINY)
CUDA = torch.device("cuda", 0)  # a device name only: these tests never reach a GPU
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def config(*overrides: str):
    """The real configs, as `gantrain <overrides>` composes them."""
    with initialize_config_module("gantrain.configs", version_base="1.3"):
        return compose("config", overrides=[*TINY, *overrides])


def images(n: int = 24, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=g, dtype=torch.uint8), torch.arange(n) % 3


# ------------------------------------------------------------------ 1. compile and double backward
@pytest.mark.parametrize("penalty, named", [(["loss=wgan_gp", "model.discriminator.norm=layer"], "loss.gp"),
                                            (["loss.r1=10"], "loss.r1")])
def test_compile_with_an_input_gradient_penalty_is_refused_in_one_line(penalty, named, tmp_path):
    with pytest.raises(UserError) as err:
        build_trainer(config("trainer.compile=true", *penalty), tmp_path)
    assert str(err.value) == (f"trainer.compile=true cannot compile a critic that needs double backward ({named}): "
                              f"drop trainer.compile or the penalty")


# ------------------------------------------------------------------ 2. the evaluator and the CUDA random stream
def test_the_evaluation_classifier_seeds_only_the_forked_cpu_generator(monkeypatch):
    """train_classifier (on a cache miss, and in every tstr evaluation) must not reseed CUDA's generators:
    torch.manual_seed would, inside fork_rng(devices=[]), which saves and restores the CPU's state only."""
    seeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: seeded.append(("cuda all", seed)))
    monkeypatch.setattr(torch.cuda, "manual_seed", lambda seed: seeded.append(("cuda", seed)))
    monkeypatch.setattr(torch, "manual_seed", lambda seed: seeded.append(("torch.manual_seed", seed)))
    x, labels = images(16)
    cpu_before = torch.get_rng_state()
    first = extractors.train_classifier(x, labels, 3, torch.device("cpu"), epochs=1, seed=5, batch_size=8)
    second = extractors.train_classifier(x, labels, 3, torch.device("cpu"), epochs=1, seed=5, batch_size=8)
    assert seeded == []
    assert torch.equal(torch.get_rng_state(), cpu_before)  # the caller's CPU stream is untouched too
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


# ------------------------------------------------------------------ 3. penalties under fp16 autocast
def tiny_critic(weight_std: float) -> nn.Module:
    critic = nn.Sequential(nn.Linear(64, 64, bias=False), nn.Linear(64, 1, bias=False))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in critic:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * weight_std)
    return critic


def test_a_loss_scale_cancels_out_of_both_penalties_in_fp32():
    critic = tiny_critic(0.1)
    f = lambda x: critic(x).squeeze(1)  # noqa: E731
    real, fake = torch.randn(8, 64), torch.randn(8, 64)
    assert torch.allclose(r1_penalty(f, real, scale=1024.0), r1_penalty(f, real), rtol=1e-5)
    torch.manual_seed(3)
    plain = gradient_penalty(f, real, fake)
    torch.manual_seed(3)  # the same interpolation weights
    assert torch.allclose(gradient_penalty(f, real, fake, scale=torch.tensor(1024.0)), plain, rtol=1e-5)


def test_a_scaled_penalty_keeps_gradients_that_fp16_would_flush_to_zero():
    """Per-sample gradients near 1e-9 are below fp16's smallest subnormal (6e-8): unscaled, the fp16 backward
    returns zeros and R1 reads 0; with the GradScaler's scale, the penalty is the fp32 value."""
    critic = tiny_critic(2e-5)
    f = lambda x: critic(x).float().squeeze(1)  # noqa: E731
    x = torch.randn(8, 64, generator=torch.Generator().manual_seed(1))
    exact = r1_penalty(f, x)
    with torch.autocast("cpu", torch.float16):
        unscaled = r1_penalty(f, x)
        scaled = r1_penalty(f, x, scale=torch.tensor(65536.0))
    assert exact > 0 and unscaled == 0  # the underflow this fixes
    assert torch.allclose(scaled, exact, rtol=1e-2)


@pytest.mark.parametrize("amp, expected", [("fp16", 65536.0), ("false", None)])
def test_the_trainer_hands_the_grad_scalers_scale_to_the_penalty(amp, expected, tmp_path, monkeypatch):
    from gantrain.systems import gan

    seen = []

    def recording(critic, real, fake, scale=None):
        seen.append(None if scale is None else float(scale))
        return gradient_penalty(critic, real, fake, scale)

    monkeypatch.setattr(gan, "gradient_penalty", recording)
    trainer = build_trainer(config("loss=wgan_gp", "model.discriminator.norm=layer", f"trainer.amp={amp}"), tmp_path)
    trainer.begin()
    trainer.train_step()
    trainer.logger.close()
    assert seen == [expected]


def test_an_fp16_overflow_of_a_scaled_penalty_is_left_to_the_grad_scaler(tmp_path):
    """At the GradScaler's first scales the scaled input gradient overflows and the loss is NaN for an update or
    two; the scaler skips those steps and lowers its scale. nan_policy=stop must not take that for divergence."""
    trainer = build_trainer(config("loss=wgan_gp", "model.discriminator.norm=layer", "trainer.amp=fp16"), tmp_path)
    trainer.begin()
    for _ in range(3):
        trainer.train_step()
    trainer.logger.close()
    assert trainer.scaler_d.get_scale() < 65536.0  # it did overflow
    trainer.check_finite()  # what fit() does at each logging step; before the watch knew: TrainingDiverged


def test_fp16_gradients_that_stay_non_finite_still_stop_the_run(tmp_path):
    from gantrain.errors import TrainingDiverged

    trainer = build_trainer(config("trainer.amp=fp16", "optim=sgd", "optim.lr=1e12"), tmp_path)
    trainer.begin()
    for _ in range(24):  # the scale halves at each overflowing update: below 1 after 17 of them
        trainer.train_step()
    trainer.logger.close()
    with pytest.raises(TrainingDiverged, match="NaN or infinite at step"):
        trainer.check_finite()  # once the GradScaler's scale is below 1, non-finite gradients are no overflow


def test_fp16_with_r1_on_a_batchnorm_critic_is_refused_in_one_line(tmp_path):
    """Reproduced under CPU fp16 autocast: BatchNorm's double backward returns NaN, every D step is skipped and
    the GradScaler's scale falls to zero (scripts/gpu_check.py asks CUDA the same question)."""
    with pytest.raises(UserError, match=r"^trainer.amp=fp16 with loss.r1 on a BatchNorm critic gives NaN gradients "
                                        r".*trainer.amp=bf16"):
        build_trainer(config("trainer.amp=fp16", "loss.r1=10"), tmp_path)
    build_trainer(config("trainer.amp=fp16", "loss.r1=10", "model.discriminator.norm=layer"), tmp_path / "fine")


# ------------------------------------------------------------------ 4. (torchrun: tests/unit/training/test_gpu_ddp.py)
def test_earliest_is_the_value_itself_in_one_process():
    assert distributed.earliest(None) is None and distributed.earliest(7) == 7


# ------------------------------------------------------------------ 5. data larger than the GPU's free memory
def test_in_memory_data_stays_on_the_host_when_the_gpu_has_too_little_free(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 10**10))  # 1,000 bytes free
    assert fits_on_device(500, CUDA) and not fits_on_device(501, CUDA)  # at most half of what is free
    assert fits_on_device(10**15, torch.device("cpu"))
    x, labels = images(24, 8)  # 1,536 bytes of images
    batches = MemoryBatches(x, labels, 4, 0, CUDA, hflip=True)  # before the fix: x.to("cuda"), here a crash
    assert not batches.resident and batches.x.device.type == "cpu" and batches.labels.device.type == "cpu"


def test_host_resident_batches_are_the_batches_of_device_resident_data(monkeypatch):
    x, labels = images(24, 8)
    cpu = torch.device("cpu")
    resident = MemoryBatches(x, labels, 5, 3, cpu, hflip=True)
    monkeypatch.setattr(batches_module, "fits_on_device", lambda nbytes, device: False)
    host = MemoryBatches(x, labels, 5, 3, cpu, hflip=True)
    assert resident.resident and not host.resident
    for _ in range(9):  # two epochs and a bit: new orders and flips
        a, b = next(resident), next(host)
        assert torch.equal(a["real"], b["real"]) and torch.equal(a["label"], b["label"])


def test_host_resident_unpaired_batches_are_the_device_resident_ones(monkeypatch):
    a, _ = images(10, 10, seed=1)
    b, _ = images(12, 10, seed=2)
    data = UnpairedData(a.expand(-1, 3, -1, -1).contiguous(), b.expand(-1, 3, -1, -1).contiguous(), image_size=8,
                        hflip=True, root="unused")
    resident = data.batches(2, 0, torch.device("cpu"))
    monkeypatch.setattr("gantrain.data.unpaired.fits_on_device", lambda nbytes, device: False)
    host = data.batches(2, 0, torch.device("cpu"))
    assert resident.resident and not host.resident
    for _ in range(6):
        x, y = next(resident), next(host)
        assert torch.equal(x["A"], y["A"]) and torch.equal(x["B"], y["B"])


# ------------------------------------------------------------------ 6. asynchronous per-step copies
@pytest.fixture
def copies_to_a_fake_gpu(monkeypatch):
    """Tensor.to("cuda") recorded (whether it was non-blocking) and answered with the CPU tensor itself; pinning
    is a no-op. So the streamed and host-memory paths run here as they would on a GPU, minus the copies."""
    calls = []
    real_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        if isinstance(target, (str, torch.device)) and torch.device(target).type == "cuda":
            calls.append(bool(kwargs.get("non_blocking", args[1] if len(args) > 1 else False)))
            return self
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)
    monkeypatch.setattr(batches_module, "pinned_empty", lambda shape, dtype: torch.empty(shape, dtype=dtype))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (0, 10**10))  # nothing fits on the "GPU"
    return calls


@pytest.mark.filterwarnings("ignore:.*pin_memory.*")
def test_streamed_batches_copy_to_the_gpu_without_waiting(copies_to_a_fake_gpu):
    x, labels = images(24, 8)
    stream = LoaderBatches(TensorImages(x, labels), 5, 0, CUDA, hflip=True, workers=0)
    for _ in range(9):  # two epochs: the flips of each go to the device once
        batch = next(stream)
    assert batch["real"].shape == (5, 1, 8, 8) and "label" in batch
    assert copies_to_a_fake_gpu and all(copies_to_a_fake_gpu)  # before the fix: a blocking flips copy per step


def test_host_memory_batches_copy_to_the_gpu_without_waiting(copies_to_a_fake_gpu):
    x, labels = images(24, 8)
    host = MemoryBatches(x, labels, 5, 0, CUDA, hflip=True)
    for _ in range(9):
        batch = next(host)
    assert batch["real"].shape == (5, 1, 8, 8)
    assert len(copies_to_a_fake_gpu) == 27 and all(copies_to_a_fake_gpu)  # images, flips, labels per step


def sync_free_steps(trainer, steps: int = 3) -> None:
    trainer.begin()
    trainer.train_step()  # warm-up: lazy allocations may sync once
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(steps):
            trainer.train_step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
        trainer.logger.close()


@needs_gpu
def test_streamed_data_makes_no_host_device_sync_between_logging_steps(tmp_path):
    trainer = build_trainer(config("trainer.device=cuda", "trainer.max_steps=6", "trainer.log_every=100"), tmp_path)
    data = trainer.data
    stream = StreamData("digits", TensorImages(data.x, data.labels), data.shape, 10, hflip=True, workers=1)
    trainer.batches = stream.batches(trainer.settings.batch_size, trainer.seed, trainer.device)
    sync_free_steps(trainer)


@needs_gpu
def test_host_memory_data_makes_no_host_device_sync_between_logging_steps(tmp_path, monkeypatch):
    monkeypatch.setattr(batches_module, "fits_on_device", lambda nbytes, device: False)
    trainer = build_trainer(config("trainer.device=cuda", "trainer.max_steps=6", "trainer.log_every=100"), tmp_path)
    assert not trainer.batches.resident
    sync_free_steps(trainer)


# ------------------------------------------------------------------ 7. R1 through SyncBatchNorm
def test_sync_bn_with_r1_on_a_batchnorm_critic_is_refused_in_one_line(tmp_path):
    with pytest.raises(UserError, match=r"^trainer.sync_bn=true cannot synchronise the BatchNorm of a critic trained "
                                        r"with loss.r1 .*model.discriminator.norm=layer") as err:
        build_trainer(config("trainer.sync_bn=true", "loss.r1=10"), tmp_path)
    assert "\n" not in str(err.value)


def test_sync_bn_with_r1_is_fine_when_only_the_generator_has_batchnorm(tmp_path):
    trainer = build_trainer(config("trainer.sync_bn=true", "loss.r1=10", "model.discriminator.norm=layer"), tmp_path)
    assert any(isinstance(m, nn.BatchNorm2d) for m in trainer.system.G.modules())


# ------------------------------------------------------------------ 8. CUDA random state in checkpoints
@pytest.fixture
def fake_cuda_rng(monkeypatch):
    """torch.cuda's RNG calls recorded: get_rng_state(device) answers a state naming the device."""
    log = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": torch.tensor([torch.device(device).index or 0]))
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: log.append("get all") or [torch.tensor([0])])
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": log.append(("set", int(state[0]), str(device))))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: log.append("set all"))
    return log


def test_a_checkpoint_keeps_the_training_gpus_random_state_only(fake_cuda_rng):
    state = rng_state(torch.device("cuda", 3))  # trained on cuda:3 of four
    assert torch.equal(state["cuda"], torch.tensor([3])) and state["device"] == "cuda"
    set_rng_state(state, torch.device("cuda", 0))  # resumed where only one GPU is visible
    assert fake_cuda_rng == [("set", 3, "cuda:0")]  # before the fix: skipped, as the device counts differ
    assert "cuda" not in rng_state(torch.device("cpu")) and "get all" not in fake_cuda_rng


def test_a_checkpoint_of_0_2_restores_the_state_at_the_training_devices_index(fake_cuda_rng):
    old = rng_state(torch.device("cpu")) | {"cuda": [torch.tensor([10]), torch.tensor([11])]}
    del old["device"]
    set_rng_state(old, torch.device("cuda", 1))
    assert fake_cuda_rng == [("set", 11, "cuda:1")]


@pytest.mark.parametrize("saved, resumed", [("cpu", "cuda"), ("cuda", "cpu")])
def test_a_resume_onto_another_kind_of_device_says_it_is_not_exact(saved, resumed, fake_cuda_rng, caplog):
    state = rng_state(torch.device(saved, 0) if saved == "cuda" else torch.device("cpu"))
    with caplog.at_level(logging.WARNING, logger="gantrain.training.checkpoint"):
        set_rng_state(state, torch.device(resumed, 0) if resumed == "cuda" else torch.device("cpu"))
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "will not repeat the uninterrupted one exactly" in said[0] and "\n" not in said[0]
    caplog.clear()
    set_rng_state(rng_state(torch.device("cpu")), torch.device("cpu"))
    assert not caplog.records  # a resume on the same kind of device says nothing


@needs_gpu
def test_the_gpu_random_state_round_trips_through_a_checkpoint():
    device = torch.device("cuda", torch.cuda.device_count() - 1)
    state = rng_state(device)
    first = torch.randn(4, device=device)
    set_rng_state(state, device)
    assert torch.equal(torch.randn(4, device=device), first)


# ------------------------------------------------------------------ 9. DataLoader workers under torchrun
def test_loader_workers_start_from_a_forkserver_when_there_are_several_ranks():
    dataset = TensorImages(*images(24, 8))
    cpu = torch.device("cpu")
    several = LoaderBatches(dataset, 4, 0, cpu, hflip=False, workers=1, rank=1, world=2)
    assert several.loader.multiprocessing_context.get_start_method() == "forkserver"
    assert LoaderBatches(dataset, 4, 0, cpu, hflip=False, workers=1).loader.multiprocessing_context is None
    assert LoaderBatches(dataset, 4, 0, cpu, hflip=False, workers=0, world=2).loader.multiprocessing_context is None


# ------------------------------------------------------------------ 10. the process group's backend
def test_the_backend_follows_the_tensors_device_on_a_gpu_node(monkeypatch):
    """On a GPU node CPU tensors (trainer.device=cpu) go through gloo, CUDA ones through NCCL."""
    joined = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: joined.setdefault("device", index))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: joined.setdefault("backend", backend))
    monkeypatch.setattr(dist, "new_group", lambda backend=None, **kw: f"{backend} group")
    monkeypatch.setattr(distributed, "_control_group", None)
    distributed.init_from_env()
    assert joined == {"backend": "cpu:gloo,cuda:nccl", "device": 1}  # before the fix: "nccl" for CPU tensors too
    assert distributed._control_group == "gloo group"


# ------------------------------------------------------------------ scripts/gpu_check.py
def test_gpu_check_without_a_gpu_says_so_and_succeeds():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_check.py")], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("gpu_check: no CUDA GPU found") and "nothing to check here" in proc.stdout


@needs_gpu
def test_fp16_penalties_train_on_a_gpu_with_a_positive_penalty(tmp_path):
    for penalty, key in ((["loss=wgan_gp", "model.discriminator.norm=layer"], "D/gradient_penalty"),
                         (["loss.r1=10"], "D/r1_penalty")):
        trainer = build_trainer(config("trainer.device=cuda", "trainer.amp=fp16", *penalty), tmp_path / key[2:])
        trainer.begin()
        for _ in range(4):
            trainer.train_step()
        trainer.logger.close()
        values = trainer.meter.read()
        assert values[key] > 0 and all(torch.isfinite(p).all() for p in trainer.system.parameters())
