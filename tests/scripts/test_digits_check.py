"""scripts/digits_check.py, the default run's acceptance check, tells real-looking digits from the usual failures:
blurry samples, copies of the training digits, and a few digits over and over."""

import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="module")
def check(load_script):
    return load_script("digits_check")


@pytest.fixture(scope="module")
def reference(check):
    """A quickly trained classifier (a few epochs, 16x16 digits: the ratios the check takes hold for it too), the
    split it used."""
    evaluator = check.reference(300, classifier_epochs=5, image_size=16)
    training, held = check.heldout_digits(evaluator)
    return evaluator, training, held


def test_held_out_real_digits_pass(check, reference):
    evaluator, training, held = reference
    out = check.check(held, evaluator, training)
    assert all(out["passes"].values()), check.report(out)
    assert out["confidence_ratio"] == pytest.approx(1.0)


def test_copies_of_training_digits_fail_novelty_only(check, reference):
    evaluator, training, _ = reference
    out = check.check(training[:300], evaluator, training)
    assert out["nn_distance"] == 0 and not out["passes"]["novelty"]
    assert out["passes"]["confidence"] and out["passes"]["classes"]


@pytest.mark.parametrize("pool", [2, 4])
def test_blurred_digits_fail(check, reference, pool):
    """Digits blurred to 8x8 or 4x4 blobs: unsure of their class, or sure of the wrong few classes."""
    evaluator, training, held = reference
    blurred = F.interpolate(F.avg_pool2d(held.float(), pool), scale_factor=pool, mode="bilinear").round().to(torch.uint8)
    out = check.check(blurred, evaluator, training)
    assert not (out["passes"]["confidence"] and out["passes"]["recall"]), check.report(out)


def test_a_few_digits_over_and_over_fail_classes_and_recall(check, reference):
    evaluator, training, held = reference
    labels = evaluator.real_labels[check.holdout_split(len(evaluator.real), 0)[1]]
    few = held[labels < 3][:20].repeat(15, 1, 1, 1)[:300]
    out = check.check(few, evaluator, training)
    assert not out["passes"]["classes"] and not out["passes"]["recall"], check.report(out)
