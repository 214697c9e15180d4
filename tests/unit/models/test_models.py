"""Architectures: the parameter counts the seeds publish, output shapes, and sizes refused clearly."""

import pytest
import torch

from gantrain.errors import UserError
from gantrain.models import dcgan, infogan, mlp, toy


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_dcgan_64_is_the_pytorch_tutorial_net():
    assert count(dcgan.Generator((3, 64, 64), z_dim=100)) == 3_576_704
    assert count(dcgan.Discriminator((3, 64, 64))) == 2_765_568


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_dcgan_is_image_size_aware(size):
    g, d = dcgan.Generator((1, size, size), z_dim=8, width=8), dcgan.Discriminator((1, size, size), width=8)
    x = g(torch.randn(2, 8))
    assert x.shape == (2, 1, size, size) and x.abs().max() <= 1
    assert d(x).shape == (2,)


def test_dcgan_32_has_one_block_fewer_than_64():
    g32, g64 = dcgan.Generator((1, 32, 32)), dcgan.Generator((1, 64, 64))
    convs = lambda g: sum(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    assert convs(g64) - convs(g32) == 1


@pytest.mark.parametrize("size", [28, 48, 100, 4])
def test_dcgan_refuses_sizes_it_cannot_make(size):
    with pytest.raises(UserError, match=f"cannot make {size}x{size}.*data.image_size"):
        dcgan.Generator((3, size, size))


def test_dcgan_init_follows_the_tutorial():
    torch.manual_seed(0)
    g = dcgan.Generator((3, 64, 64))
    conv, bn = g.main[0], g.main[1]
    assert abs(conv.weight.std().item() - 0.02) < 0.002 and abs(conv.weight.mean().item()) < 0.002
    assert abs(bn.weight.mean().item() - 1.0) < 0.01 and bn.bias.abs().max() == 0


def test_cs231n_vanilla_counts():
    assert count(mlp.Discriminator((1, 28, 28))) == 267_009
    assert count(mlp.Generator((1, 28, 28), z_dim=4)) == 1_858_320


def test_cs231n_dcgan_counts():
    assert count(infogan.Generator((1, 28, 28), z_dim=4)) == 6_580_801
    assert count(infogan.Discriminator((1, 28, 28))) == 1_102_721
    assert infogan.Generator((1, 28, 28), z_dim=96)(torch.rand(3, 96) * 2 - 1).shape == (3, 1, 28, 28)


def test_infogan_refuses_other_shapes():
    with pytest.raises(UserError, match="1x28x28"):
        infogan.Generator((1, 32, 32))


def test_seed001_mlp_bn_layers():
    g, d = mlp.BNGenerator((3, 32, 32), z_dim=128), mlp.BNDiscriminator((3, 32, 32))
    widths = [m.out_features for m in g.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 512, 1024, 2048, 3 * 32 * 32]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in g.modules()) == 3
    assert [m.out_features for m in d.modules() if isinstance(m, torch.nn.Linear)] == [1024, 512, 256, 1]
    assert all(m.bias.abs().max() == 0 for m in d.modules() if isinstance(m, torch.nn.Linear))
    assert g(torch.randn(4, 128)).shape == (4, 3, 32, 32)


def test_toy_nets_of_seed002():
    g, d = toy.Generator((2,), z_dim=2), toy.Discriminator((2,))
    assert count(g) == 6 and count(d) == 2 * 5 + 5 + 5 * 3 + 3 + 3 + 1
    assert g(torch.randn(5, 2)).shape == (5, 2) and d(torch.randn(5, 2)).shape == (5,)
    with pytest.raises(UserError, match="points"):
        toy.Generator((1, 8, 8))


def test_discriminators_output_logits_not_probabilities():
    d = mlp.Discriminator((1, 28, 28))
    with torch.no_grad():
        d.net[-1].bias.fill_(10.0)
    assert d(torch.zeros(2, 1, 28, 28)).min() > 1  # a sigmoid would cap it at 1
