"""model.discriminator.freeze (FreezeD): D's first blocks keep every tensor bitwise through training (weights,
BatchNorm statistics, spectral norm's vectors), D's optimizer never holds them; block counts and refusals."""

import pytest
import torch

from gantrain.errors import UserError
from gantrain.models import dcgan, dcgan_keras, infogan, mlp, resnet


@pytest.mark.parametrize("overrides, frozen", [
    # BatchNorm in the second block; WGAN's weight clipping (0.01) would move the frozen N(0, 0.02) weights
    (("loss=wgan", "model.discriminator.freeze=2"), ("main.0.", "main.2.", "main.3.")),
    # spectral norm on every layer (its power iteration), R1's double backward through the frozen block
    (("model=resnet", "model.generator.width=8", "model.discriminator.width=8", "loss.r1=1", "loss.r1_every=1",
      "model.discriminator.freeze=1"), ("blocks.0.",)),
], ids=["dcgan", "resnet"])
def test_frozen_blocks_stay_bitwise_and_out_of_the_optimizer(train, overrides, frozen):
    trainer = train(*overrides, "trainer.max_steps=3", fit=False)
    D = trainer.system.D
    before = {key: value.clone() for key, value in D.state_dict().items()}
    held = {name for name, p in D.named_parameters() if not p.requires_grad}
    assert held and held == {name for name, _ in D.named_parameters() if name.startswith(frozen)}
    if "loss=wgan" in overrides:
        assert max(D.state_dict()["main.0.weight"].abs().max(), D.state_dict()["main.2.weight"].abs().max()) > 0.01
    trainer.fit()
    after = D.state_dict()
    kept = [key for key in after if key.startswith(frozen)]
    assert kept and all(torch.equal(before[key], after[key]) for key in kept), [k for k in kept
                                                                               if not torch.equal(before[k], after[k])]
    assert any(not torch.equal(before[key], after[key]) for key in after if not key.startswith(frozen))  # D trained
    optimized = {id(p) for group in trainer.opt_d.param_groups for p in group["params"]}
    frozen_ids = {id(p) for name, p in D.named_parameters() if name in held}
    assert not optimized & frozen_ids and not frozen_ids & {id(p) for p in trainer.opt_d.state}
    assert len(trainer.opt_d.state) == len(optimized) == sum(1 for _ in D.parameters()) - len(held)


def trainable(network: torch.nn.Module) -> int:
    return sum(p.requires_grad for p in network.parameters())


def test_each_block_discriminator_declares_its_blocks():
    assert trainable(dcgan.Discriminator((1, 64, 64), width=8, freeze=4)) == 1  # 4 blocks, then the output conv
    assert trainable(infogan.Discriminator((1, 28, 28), freeze=3)) == 2  # conv, conv, FC blocks; the FC1 head trains
    assert trainable(dcgan_keras.Discriminator((3, 32, 32), capacity=4, freeze=4)) == 2
    assert trainable(resnet.Discriminator((3, 32, 32), width=8, freeze=4)) == 2  # 4 residual blocks at 32x32
    bn = dcgan.Discriminator((1, 32, 32), width=8, freeze=3).main[3]
    assert not bn.track_running_stats and bn.running_mean is not None  # its statistics kept, no longer updated


@pytest.mark.parametrize("build, message", [
    (lambda: dcgan.Discriminator((1, 32, 32), width=8, freeze=4),
     "model.discriminator.freeze=4: model=dcgan's discriminator has 3 blocks at this image size; freeze at most 3 "
     "(its output layer always trains)"),
    (lambda: resnet.Discriminator((3, 32, 32), width=8, freeze=-1),
     "model.discriminator.freeze=-1: use 0 (every block trains) or the number of D's first blocks to freeze"),
    (lambda: mlp.BNDiscriminator((1, 28, 28), freeze=1),
     "model.discriminator.freeze=1: model=mlp_bn's discriminator has no blocks to freeze (FreezeD is for the block "
     "discriminators of model=dcgan, resnet, infogan and dcgan_keras); drop it"),
])
def test_freezing_what_is_not_there_is_refused_in_one_line(build, message):
    with pytest.raises(UserError) as err:
        build()
    assert str(err.value) == message


def test_the_refusal_reaches_the_command_line_as_itself(train):
    with pytest.raises(UserError, match="^model.discriminator.freeze=1: model=mlp's discriminator has no blocks"):
        train("model=mlp", "model.discriminator.freeze=1", base=("trainer=debug",), fit=False)
