"""Loss values against numbers computed by hand from the formulas (and torch's BCE)."""

import math

import torch
import torch.nn.functional as F

from gantrain.systems import losses

REAL = torch.tensor([2.0, -1.0, 0.5])
FAKE = torch.tensor([-3.0, 0.0, 1.5])


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_bce_d_matches_hand_computation():
    expected = -sum(log_sigmoid(x) for x in REAL.tolist()) / 3 - sum(math.log(1 - 1 / (1 + math.exp(-x))) for x in FAKE.tolist()) / 3
    assert math.isclose(losses.bce_d(REAL, FAKE).item(), expected, rel_tol=1e-6)


def test_bce_matches_torch_bce_with_probabilities():
    d = F.binary_cross_entropy(torch.sigmoid(REAL), torch.ones(3)) + F.binary_cross_entropy(torch.sigmoid(FAKE), torch.zeros(3))
    assert torch.allclose(losses.BCE().d(REAL, FAKE), d, atol=1e-6)
    g = F.binary_cross_entropy(torch.sigmoid(FAKE), torch.ones(3))
    assert torch.allclose(losses.BCE().g(FAKE), g, atol=1e-6)


def test_non_saturating_and_minimax_generator_losses():
    assert math.isclose(losses.bce_g(FAKE).item(), -sum(log_sigmoid(x) for x in FAKE.tolist()) / 3, rel_tol=1e-6)
    minimax = sum(math.log(1 - 1 / (1 + math.exp(-x))) for x in FAKE.tolist()) / 3
    assert math.isclose(losses.minimax_g(FAKE).item(), minimax, rel_tol=1e-6)
    assert math.isclose(losses.Minimax().g(FAKE).item(), minimax, rel_tol=1e-6)


def test_bce_is_stable_for_huge_logits():
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(losses.bce_d(big, -big))
    assert math.isclose(losses.bce_g(torch.tensor([-200.0])).item(), 200.0, rel_tol=1e-6)


def test_label_smoothing_targets_real_label():
    smoothed = losses.BCE(real_label=0.9).d(REAL, FAKE)
    expected = F.binary_cross_entropy_with_logits(REAL, torch.full((3,), 0.9)) + F.softplus(FAKE).mean()
    assert torch.allclose(smoothed, expected)


def test_lsgan_formulas_with_half_factors():
    d = 0.5 * sum((x - 1) ** 2 for x in REAL.tolist()) / 3 + 0.5 * sum(x**2 for x in FAKE.tolist()) / 3
    g = 0.5 * sum((x - 1) ** 2 for x in FAKE.tolist()) / 3
    assert math.isclose(losses.LSGAN().d(REAL, FAKE).item(), d, rel_tol=1e-6)
    assert math.isclose(losses.LSGAN().g(FAKE).item(), g, rel_tol=1e-6)


def test_output_is_probability_for_bce_and_score_for_lsgan():
    assert torch.allclose(losses.BCE().output(REAL), torch.sigmoid(REAL))
    assert torch.equal(losses.LSGAN().output(REAL), REAL)


def test_wasserstein_and_hinge_by_hand():
    assert math.isclose(losses.Wasserstein().d(REAL, FAKE).item(), FAKE.mean().item() - REAL.mean().item(), rel_tol=1e-6)
    assert math.isclose(losses.Wasserstein().g(FAKE).item(), -FAKE.mean().item(), rel_tol=1e-6)
    hinge = sum(max(0.0, 1 - r) for r in REAL.tolist()) / 3 + sum(max(0.0, 1 + f) for f in FAKE.tolist()) / 3
    assert math.isclose(losses.Hinge().d(REAL, FAKE).item(), hinge, rel_tol=1e-6)
    assert math.isclose(losses.Hinge().g(FAKE).item(), -FAKE.mean().item(), rel_tol=1e-6)


def test_wasserstein_reports_the_critics_estimate():
    stats = losses.Wasserstein().extra_stats(REAL, FAKE)
    assert math.isclose(stats["D/wasserstein_estimate"].item(), REAL.mean().item() - FAKE.mean().item(), rel_tol=1e-6)


def test_label_smoothing_for_least_squares():
    d = 0.5 * sum((x - 0.9) ** 2 for x in REAL.tolist()) / 3 + 0.5 * sum(x**2 for x in FAKE.tolist()) / 3
    assert math.isclose(losses.LSGAN(real_label=0.9).d(REAL, FAKE).item(), d, rel_tol=1e-6)


def test_bad_loss_options_are_user_errors():
    import pytest

    from gantrain.errors import UserError

    for bad in (dict(r1=-1.0), dict(r1_every=0), dict(gp=-2.0), dict(clip=0.0)):
        with pytest.raises(UserError):
            losses.Hinge(**bad)
    with pytest.raises(UserError, match="real_label"):
        losses.BCE(real_label=1.5)
