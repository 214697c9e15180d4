"""trainer.grad_accum: K micro-batches per optimizer step give the update of the whole batch (float tolerance, on a
family without batch-coupled layers, with both paths fed the same noise and images); the GradScaler, the NaN policy
and DDP's all-reduce act once per step; what cannot be split is refused in one line."""

import contextlib
import math

import pytest
import torch

from gantrain.cli.checks import check_command_line
from gantrain.config.build import build_system, check_grad_accum_fits
from gantrain.config.schema import trainer_settings
from gantrain.errors import UserError

# DCGAN without BatchNorm: no layer couples a batch's samples, so the micro-batches' gradients add up exactly
NO_BATCH_NORM = ("model.generator.norm=none", "model.discriminator.norm=none")


def same_noise(system, seed: int = 0) -> None:
    """The system's noise as consecutive rows of one fixed draw: a batch drawn in K pieces is the batch drawn whole
    (torch draws normals in blocks, so K separate draws would differ from one)."""
    z = torch.randn(512, system.z_dim, generator=torch.Generator().manual_seed(seed))
    used = [0]

    def noise(n, generator=None, device=None, truncation=None):
        used[0] += n
        return z[used[0] - n:used[0]].to(device or system.device)

    system.noise = noise


def trained(train, k: int, *overrides: str):
    trainer = train(*NO_BATCH_NORM, f"trainer.grad_accum={k}", *overrides, fit=False)
    same_noise(trainer.system)
    trainer.fit()
    return trainer


def largest_difference(a, b) -> float:
    return max((pa - pb).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))


def test_two_micro_batches_make_the_update_of_the_whole_batch(train):
    """Lazy R1 (at steps 0 and 2, every micro-batch of those steps) and two D steps per G step: the G step takes
    the fakes of the last D step's micro-batches in order (the last with its graph, the first made again)."""
    extra = ("trainer.max_steps=3", "loss.r1=1", "loss.r1_every=2", "trainer.n_critic=2")
    whole, split = trained(train, 1, *extra), trained(train, 2, *extra)
    start = train(*NO_BATCH_NORM, fit=False).system
    assert largest_difference(whole.system, start) > 1e-3  # the weights really moved ...
    assert largest_difference(whole.system, split.system) < 2e-6  # ... and the same way
    assert split.opt_d.state_dict()["state"][0]["step"] == 6  # one optimizer step per D step, not per micro-batch


def test_under_fp16_the_grad_scaler_scales_once_per_step(train, monkeypatch):
    """CPU autocast in fp16 with SGD (whose update is the gradient itself): the same update within fp16's precision;
    an overflow in one micro-batch skips the whole step and halves the scale once."""
    extra = ("trainer.max_steps=2", "trainer.amp=fp16", "optim=sgd")
    whole, split = trained(train, 1, *extra), trained(train, 2, *extra)
    start = train(*NO_BATCH_NORM, "optim=sgd", fit=False).system
    moved = largest_difference(whole.system, start)
    assert moved > 1e-6 and largest_difference(whole.system, split.system) < 1e-2 * moved
    assert split.scaler_d.get_scale() == whole.scaler_d.get_scale() == 2.0 ** 16  # no overflow, no growth yet

    overflow = train(*NO_BATCH_NORM, "trainer.grad_accum=2", *extra, "trainer.max_steps=1", fit=False)
    before = {k: v.clone() for k, v in overflow.system.D.state_dict().items()}
    d_loss, calls = overflow.system.d_loss, [0]

    def second_overflows(batch):  # the step's second micro-batch gives an infinite loss
        calls[0] += 1
        loss, stats = d_loss(batch)
        return (loss * math.inf if calls[0] == 2 else loss), stats

    monkeypatch.setattr(overflow.system, "d_loss", second_overflows)
    overflow.fit()
    assert calls[0] == 2 and overflow.scaler_d.get_scale() == 2.0 ** 15  # backed off once for the step
    assert all(torch.equal(before[k], v) for k, v in overflow.system.D.state_dict().items() if "running" not in k)
    assert overflow.scaler_g.get_scale() == 2.0 ** 16  # G's step was fine


@pytest.mark.parametrize("n_critic", [1, 2])
def test_ddp_all_reduces_once_per_step_after_the_last_micro_batch(train, n_critic):
    """DDP's reducer, acted out: a forward outside no_sync arms an all-reduce, which the network's next backward does
    (with the gradients accumulated so far), whenever that comes. With a stand-in for the replicas recording the
    forwards and backwards of one step, each network must all-reduce once, at its last backward."""
    trainer = train(*NO_BATCH_NORM, "trainer.grad_accum=2", f"trainer.n_critic={n_critic}", fit=False)
    system, quiet, events = trainer.system, set(), []

    class Replicas:  # Trainer.no_sync and unwrapped(), as distributed.Replicas offers them
        @contextlib.contextmanager
        def no_sync(self, params):
            ids = {id(p) for p in params}
            held = {name for name, net in (("G", system.G), ("D", system.D)) if any(id(p) in ids for p in net.parameters())}
            before = set(quiet)
            quiet.update(held)
            try:
                yield
            finally:
                quiet.clear()
                quiet.update(before)

        def unwrapped(self):
            return contextlib.nullcontext()

    trainer.replicas = Replicas()
    for name in ("G", "D"):
        network = getattr(system, name)
        network.register_forward_pre_hook(lambda m, args, name=name: events.append((name, "quiet" if name in quiet else "synced")))
        next(p for p in network.parameters() if p.requires_grad).register_post_accumulate_grad_hook(
            lambda p, name=name: events.append((name, "backward")))
    trainer.begin()
    trainer.train_step()
    for name in ("G", "D"):
        armed, reduced = False, []
        mine = [kind for who, kind in events if who == name]
        for i, kind in enumerate(mine):
            armed = armed or kind == "synced"
            if kind == "backward" and armed:
                reduced.append(i)
                armed = False
        steps = n_critic if name == "D" else 1
        assert mine.count("backward") == 2 * steps, (name, mine)  # one per micro-batch and optimizer step
        backwards = [i for i, kind in enumerate(mine) if kind == "backward"]
        assert reduced == backwards[1::2], (name, mine)  # each step's last micro-batch, and only it
        assert not armed, (name, mine)  # no all-reduce left armed for a later step


def test_what_cannot_be_split_is_refused_in_one_line(compose, tiny_cyclegan, image_tree):
    with pytest.raises(UserError) as err:
        check_command_line(["trainer.batch_size=64", "trainer.grad_accum=3", "hydra.run.dir=/tmp/unused"])
    assert str(err.value) == ("trainer.grad_accum=3: trainer.batch_size=64 does not split into 3 equal micro-batches; "
                              "use a divisor of it (2, 4, 8, 16), or change trainer.batch_size")
    gan = build_system(compose("trainer=debug"), (1, 32, 32))
    gan.D.mbstd_group_size = 8  # a minibatch standard deviation layer's group, as StyleGAN2's D declares it
    check_grad_accum_fits(trainer_settings(batch_size=32, grad_accum=4), gan)  # micro-batches of 8: fine
    with pytest.raises(UserError, match=r"^trainer.grad_accum=8: micro-batches of 4 images \(trainer.batch_size=32 / 8\) "
                                        r"are smaller than the discriminator's minibatch standard deviation group of 8; "
                                        r"lower trainer.grad_accum to at most 4 or raise trainer.batch_size$"):
        check_grad_accum_fits(trainer_settings(batch_size=32, grad_accum=8), gan)
    cyclegan = build_system(compose(*tiny_cyclegan, f"data.root={image_tree}"), (3, 32, 32))
    with pytest.raises(UserError, match="^trainer.grad_accum=2: CycleGAN does not split its steps into micro-batches"):
        check_grad_accum_fits(trainer_settings(batch_size=4, grad_accum=2), cyclegan)


def test_ada_counts_the_images_of_every_micro_batch(compose, tiny):
    system = build_system(compose(*tiny, *NO_BATCH_NORM, "model.ada=0.6", "model.ada_interval=1"), (1, 32, 32))
    system.ada.target = -2.0  # below any r_t: p rises at this adjustment, by the images it counted over 20 kimg
    real = torch.rand(8, 1, 32, 32) * 2 - 1
    for part in real.chunk(2):
        system.d_loss({"real": part})
    system.after_d_step()
    assert float(system.ada.p) == pytest.approx(8 / 20_000)
