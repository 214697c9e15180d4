"""Metric maths against independent computations, the extractors' plumbing (offline), evaluation during
training with checkpoints/best.pt, and the gantrain-eval command."""

import json
import urllib.error

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from scipy import linalg
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gantrain.config.build import build_trainer
from gantrain.errors import UserError
from gantrain.metrics import extractors, maths
from gantrain.metrics.evaluator import Evaluator


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0) -> np.ndarray:
    mix = np.random.default_rng(1234).normal(size=(d, d)) / np.sqrt(d)  # correlated features, like a network's
    return np.random.default_rng(seed).normal(size=(n, d)) @ mix * scale + shift


# ------------------------------------------------------------------ FID
def test_fid_matches_torch_fidelity_and_an_eigenvalue_computation():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    real, fake = features(3000, 64, 0), features(2500, 64, 1, shift=0.3, scale=1.2)
    ours = maths.fid(real, fake)
    stats = [{"mu": f.mean(0), "sigma": np.cov(f, rowvar=False)} for f in (real, fake)]
    theirs = fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"]
    # independent: Tr sqrt(S1 S2) is the sum of the square roots of the eigenvalues of S1 S2
    (m1, s1), (m2, s2) = (maths.mean_cov(f) for f in (real, fake))
    root_s1 = linalg.sqrtm(s1).real
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(root_s1 @ s2 @ root_s1), 0, None)).sum()
    independent = ((m1 - m2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * trace_sqrt
    assert abs(ours - theirs) / theirs < 1e-6
    assert abs(ours - independent) / independent < 1e-6


def test_fid_of_identical_sets_is_zero():
    real = features(2000, 32, 0)
    assert abs(maths.fid(real, real.copy())) < 1e-6


def test_fid_refuses_a_square_root_with_a_large_imaginary_part():
    # heavy-tailed features (like a network's post-ReLU activations) from fewer samples than dimensions: the
    # square root of the product of two rank-deficient covariances picks up an imaginary part of ~0.2
    few_real, few_fake = np.exp(3 * features(30, 64, 0)), np.exp(3 * features(32, 64, 1))
    with pytest.raises(UserError, match="30 real and 32 generated samples for 64 features") as err:
        maths.fid(few_real, few_fake)
    assert "num_samples" in str(err.value) and "\n" not in str(err.value)
    many_real, many_fake = np.exp(3 * features(2000, 64, 0)), np.exp(3 * features(2000, 64, 1))
    assert np.isfinite(maths.fid(many_real, many_fake))  # enough samples: the ordinary case still passes


def test_fid_of_two_gaussians_is_the_closed_form():
    rng = np.random.default_rng(0)
    d = 8
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    var1, var2 = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    closed = ((mu1 - mu2) ** 2).sum() + (var1 + var2 - 2 * np.sqrt(var1 * var2)).sum()
    assert maths.frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(closed, rel=1e-9)
    sampled = maths.fid(rng.normal(size=(200000, d)) * np.sqrt(var1) + mu1, rng.normal(size=(200000, d)) * np.sqrt(var2) + mu2)
    assert sampled == pytest.approx(closed, rel=0.02)


# ------------------------------------------------------------------ KID
def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    real, fake = features(1500, 48, 2), features(1200, 48, 3, shift=0.2)
    mean, std = maths.kid(real, fake, subsets=20, subset_size=500, seed=2020)
    theirs = kid_features_to_metric(torch.from_numpy(fake), torch.from_numpy(real), kid_subsets=20, kid_subset_size=500,
                                    kid_degree=3, kid_gamma=None, kid_coef0=1, rng_seed=2020, verbose=False)
    assert abs(mean - theirs["kernel_inception_distance_mean"]) / abs(theirs["kernel_inception_distance_mean"]) < 1e-6
    assert abs(std - theirs["kernel_inception_distance_std"]) / theirs["kernel_inception_distance_std"] < 1e-6


def test_kid_is_unbiased_near_zero_for_one_distribution():
    mean, std = maths.kid(features(4000, 16, 4), features(4000, 16, 5), subsets=50, subset_size=400)
    far, _ = maths.kid(features(4000, 16, 4), features(4000, 16, 5, shift=1.0), subsets=50, subset_size=400)
    assert abs(mean) < 3 * std / np.sqrt(50) + 1e-3
    assert far > 20 * abs(mean)


# ------------------------------------------------------------------ IS and precision/recall
def test_inception_score_known_cases():
    confident = np.eye(10)[np.arange(1000) % 10]  # every class, each predicted with certainty: IS = K
    assert maths.inception_score(confident, splits=1)[0] == pytest.approx(10.0, rel=1e-9)  # (shuffled splits of
    assert 9 < maths.inception_score(confident, splits=10)[0] < 10  # 100 are not exactly balanced: a little under K)
    collapsed = np.tile(np.eye(10)[3], (1000, 1))  # one class only: IS = 1
    assert maths.inception_score(collapsed, splits=10)[0] == pytest.approx(1.0, rel=1e-9)
    uncertain = np.full((1000, 10), 0.1)
    assert maths.inception_score(uncertain, splits=5)[0] == pytest.approx(1.0, rel=1e-9)


def test_inception_score_ignores_input_order_and_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    rng = np.random.default_rng(0)
    labels = np.sort(rng.integers(0, 10, 2000))  # a folder of class sub-folders: read sorted by class
    logits = 4 * np.eye(10)[labels] + rng.normal(size=(2000, 10))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sorted_is = maths.inception_score(probs, splits=10)
    shuffled_is = maths.inception_score(probs[rng.permutation(2000)], splits=10)
    assert sorted_is[0] == pytest.approx(shuffled_is[0], rel=0.02)  # in input order it was ~1 per chunk
    in_order = isc_features_to_metric(torch.from_numpy(np.log(probs)), splits=10, shuffle=False)["inception_score_mean"]
    assert in_order < 1.5 and sorted_is[0] > 2 * in_order  # splits of one class each collapse; shuffled ones do not
    theirs = isc_features_to_metric(torch.from_numpy(np.log(probs)), splits=10, shuffle=True, rng_seed=2020)
    assert sorted_is[0] == pytest.approx(theirs["inception_score_mean"], rel=1e-9)
    assert sorted_is[1] == pytest.approx(theirs["inception_score_std"], rel=1e-6)


def test_precision_recall_known_cases():
    real = features(600, 8, 6)
    assert maths.precision_recall(real, real.copy()) == (1.0, 1.0)
    assert maths.precision_recall(real, features(600, 8, 7, shift=100.0)) == (0.0, 0.0)
    # fakes that cover only half of the real modes: precise but half the recall
    rng = np.random.default_rng(0)
    modes = rng.normal(size=(4, 8)) * 50
    real = np.concatenate([m + rng.normal(size=(300, 8)) for m in modes])
    fake = np.concatenate([m + rng.normal(size=(600, 8)) for m in modes[:2]])
    precision, recall = maths.precision_recall(real, fake)
    full_precision, full_recall = maths.precision_recall(real, np.concatenate([fake] + [m + rng.normal(size=(300, 8)) for m in modes[2:]]))
    assert precision > 0.8 and abs(precision - full_precision) < 0.1
    assert 0.4 * full_recall < recall < 0.6 * full_recall


def test_knn_radii_is_the_kth_neighbour_distance():
    points = np.array([[0.0], [1.0], [3.0], [6.0], [10.0]])
    assert maths.knn_radii(points, k=1).tolist() == [1.0, 1.0, 2.0, 3.0, 4.0]
    assert maths.knn_radii(points, k=3).tolist() == [6.0, 5.0, 3.0, 5.0, 9.0]


# ------------------------------------------------------------------ extractors
@pytest.fixture
def random_inception(tmp_path, monkeypatch):
    """torch-fidelity's FID Inception with random weights: the plumbing without the download."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = tmp_path / "empty.pth"
    torch.save({}, weights)
    monkeypatch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
    return weights


def test_inception_extractor_plumbing(random_inception):
    torch.manual_seed(0)
    extractor = extractors.InceptionExtractor(torch.device("cpu"), batch_size=2, weights=str(random_inception))
    feats, probs = extractor(torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8))  # gray -> RGB, resized
    assert feats.shape == (3, 2048) and probs.shape == (3, 1008)
    assert feats.dtype == np.float64 and np.allclose(probs.sum(1), 1.0)


def test_inception_offline_error_names_the_file_and_where_it_goes(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as module

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(module, "load_state_dict_from_url", offline)
    with pytest.raises(UserError) as err:
        extractors.inception_network(None)
    message = str(err.value)
    assert extractors.INCEPTION_FILE in message and extractors.INCEPTION_URL in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "inception_weights=" in message
    with pytest.raises(UserError, match="does not exist"):
        extractors.inception_network(str(tmp_path / "missing.pth"))


def test_inception_weights_that_would_run_code_are_refused(tmp_path):
    import pickle

    class Hostile:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "hostile.pth"
    path.write_bytes(pickle.dumps(Hostile()))
    with pytest.raises(UserError, match="not a plain PyTorch weights file"):
        extractors.inception_network(str(path))


# ------------------------------------------------------------------ the evaluator
@pytest.fixture(scope="module")
def mnist_400(make_data, tmp_path_factory):
    """A tiny MNIST of 400 training images (100 held out by the classifier), shared: the tests only read it."""
    return make_data.mnist(tmp_path_factory.mktemp("mnist_400"), n=400)


def test_evaluator_caches_real_statistics_and_scores_real_images_well(compose, mnist_400, tmp_path_factory, monkeypatch):
    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("GANTRAIN_CACHE", str(cache))  # the user's cache folder, never the data's
    data = instantiate(compose("data=mnist", f"data.root={mnist_400}").data)
    first = Evaluator(data, num_samples=100, classifier_epochs=1, kid_subset_size=50, kid_subsets=5, device="cpu")
    cached = sorted(p.name for p in (cache / "metrics").iterdir())
    assert any(n.startswith("classifier-mnist") for n in cached) and any(n.startswith("realfeatures-classifier") for n in cached)
    second = Evaluator(data, num_samples=100, classifier_epochs=1, kid_subset_size=50, kid_subsets=5, device="cpu")
    assert np.array_equal(first.real_features, second.real_features)
    real_scores = first.score(first.real[:200])
    noise_scores = first.score(torch.randint(0, 256, (200, 1, 28, 28), dtype=torch.uint8))
    assert real_scores["fid"] < noise_scores["fid"] and real_scores["precision"] > noise_scores["precision"]
    with pytest.raises(UserError, match="generated images are 3x28x28"):
        first.score(torch.zeros(10, 3, 28, 28, dtype=torch.uint8))


def test_classifier_quality_is_measured_stored_and_a_weak_classifier_warned_about(compose, mnist_400, tmp_path, monkeypatch,
                                                                                   caplog):
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    data = instantiate(compose("data=mnist", f"data.root={mnist_400}").data)
    with caplog.at_level("INFO"):
        evaluator = Evaluator(data, num_samples=100, classifier_epochs=1, kid_subset_size=50, kid_subsets=5, device="cpu")
    info = evaluator.extractor.info
    assert info["name"] == "classifier" and info["version"] == str(extractors.EXTRACTOR_VERSION) and len(info["sha256"]) == 8
    assert 0 <= info["heldout_accuracy"] <= 1 and info["real_is"] >= 1 and info["heldout_images"] == 100  # 400 images
    saved = torch.load(next((tmp_path / "cache" / "metrics").glob("classifier-*.pt")), weights_only=True)
    assert saved["version"] == extractors.EXTRACTOR_VERSION and saved["quality"]["heldout_accuracy"] == info["heldout_accuracy"]
    assert extractors.weights_sha(evaluator.classifier) == info["sha256"]
    # one epoch of 3 steps leaves it near uniform: one warning line that says what to do
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "classifier is weak" in r.getMessage()]
    assert len(warnings) == 1 and "classifier_epochs" in warnings[0] and "extractor=inception" in warnings[0]
    assert sum("extractor: classifier v2 (sha" in r.getMessage() for r in caplog.records) == 1
    assert evaluator.score(evaluator.real[:50]).extractor == info


class SquareOracle(torch.nn.Module):
    """Reads the label of make_mnist's squares from their position: a perfect classifier, untrained."""

    def forward(self, x):
        cells = torch.stack([x[:, 0, 4 + r * 10:12 + r * 10, 2 + c * 5:7 + c * 5].mean((1, 2)) for r in range(2) for c in range(5)], 1)
        return cells, 50 * cells


def test_a_good_classifier_is_not_warned_about(compose, mnist_400):
    data = instantiate(compose("data=mnist", f"data.root={mnist_400}").data)
    from gantrain.metrics.evaluator import real_images

    images, labels = real_images(data, 10**9)
    quality = extractors.held_out_quality(SquareOracle(), images[:200], labels[:200], torch.device("cpu"))
    assert quality["heldout_accuracy"] == 1.0 and quality["real_is"] > 8
    assert extractors.weakness(quality | {"epochs": 5}, 10) is None
    assert "held-out accuracy 0.500" in extractors.weakness({"heldout_accuracy": 0.5, "real_is": 9.0, "epochs": 1}, 10)
    assert "real IS 3" in extractors.weakness({"heldout_accuracy": 0.95, "real_is": 3.0, "epochs": 1}, 10)


def test_classifier_epochs_auto_and_the_cache_key(compose, mnist_400, tmp_path, monkeypatch):
    assert extractors.resolve_epochs("auto", 750) == 84  # 6 steps an epoch: 504 steps
    assert extractors.resolve_epochs("auto", 45000) == 3 and extractors.resolve_epochs("auto", 10**6) == 3
    assert extractors.resolve_epochs(7, 750) == 7
    with pytest.raises(UserError, match="classifier_epochs=three"):
        extractors.resolve_epochs("three", 750)
    assert extractors.classifier_key("k", 1, 0) != extractors.classifier_key("k", 2, 0) != extractors.classifier_key("k", 2, 1)
    monkeypatch.setenv("GANTRAIN_CACHE", str(tmp_path / "cache"))
    data = instantiate(compose("data=mnist", f"data.root={mnist_400}").data)
    one = Evaluator(data, num_samples=10, classifier_epochs=1, device="cpu")
    two = Evaluator(data, num_samples=10, classifier_epochs=2, device="cpu")
    cached = sorted(p.name for p in (tmp_path / "cache" / "metrics").iterdir())
    assert len([n for n in cached if n.startswith("classifier-")]) == 2  # a changed setting never reuses a classifier
    assert len([n for n in cached if n.startswith("realfeatures-")]) == 2  # nor the features of the other one
    assert one.extractor.info["sha256"] != two.extractor.info["sha256"]


def test_eval_during_training_logs_metrics_and_keeps_best_checkpoint(compose, mnist_400, tmp_path, caplog):
    cfg = compose(
        "experiment=cs231n_dcgan", "data=mnist", f"data.root={mnist_400}", "trainer=debug", "trainer.max_steps=4",
        "trainer.eval_every=2", "metrics.num_samples=64", "metrics.kid_subset_size=32", "metrics.kid_subsets=4",
        "metrics.classifier_epochs=1", "metrics.metrics=[fid,kid,is,pr]", "trainer.device=cpu")
    run_dir = tmp_path / "run"
    with caplog.at_level("INFO"):
        trainer = build_trainer(cfg, run_dir)
        trainer.fit()
    assert sum(r.getMessage().startswith("extractor: classifier") for r in caplog.records) == 1  # once, when built
    best = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert best["best"]["metric"] == "fid" and best["best"]["step"] in (2, 4)
    events = EventAccumulator(str(run_dir)).Reload()
    tags = events.Tags()["scalars"]
    for tag in ("metrics/fid", "metrics/kid", "metrics/is", "metrics/precision", "metrics/recall", "perf/eval_share"):
        assert tag in tags, tag
    assert [e.step for e in events.Scalars("metrics/fid")] == [2, 4]
    fids = {e.step: e.value for e in events.Scalars("metrics/fid")}
    assert best["best"]["value"] == pytest.approx(min(fids.values()), rel=1e-5)


def test_gantrain_eval_cli_on_a_run_and_on_real_vs_real(cli, mnist_400, tmp_path):
    run_dir = tmp_path / "run"
    cli.run("-m", "gantrain", "experiment=cs231n_dcgan", "data=mnist", f"data.root={mnist_400}", "trainer=debug",
            f"hydra.run.dir={run_dir}", cwd=tmp_path, check=True)
    out = tmp_path / "m.json"
    evaluate = ["-c", "from gantrain.cli import evaluate; evaluate()"]
    common = ["num_samples=100", "kid_subset_size=50", "kid_subsets=5", "classifier_epochs=1", "device=cpu"]
    done = cli.run(*evaluate, f"run={run_dir}", f"out={out}", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    values = json.loads(out.read_text())
    assert {"fid", "kid", "is", "precision", "recall"} <= set(values) and "fid" in done.stdout
    from gantrain import __version__
    assert values["gantrain_version"] == __version__  # which gantrain wrote the numbers
    extractor = values["extractor"]  # which extractor, and how good: numbers of different ones never compared
    assert extractor["name"] == "classifier" and extractor["version"] == str(extractors.EXTRACTOR_VERSION)
    assert {"sha256", "heldout_accuracy", "real_is"} <= set(extractor)
    assert f"extractor: classifier v{extractors.EXTRACTOR_VERSION} (sha {extractor['sha256']}), held-out accuracy" in done.stdout
    floor = tmp_path / "floor.json"
    done = cli.run(*evaluate, "real=mnist", "fake=mnist", f"data.root={mnist_400}", f"out={floor}", *common, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(floor.read_text())["fid"] < values["fid"]  # real-vs-real is the floor
    bad = cli.run(*evaluate, "real=mnist", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "fake=" in bad.stderr and "Traceback" not in bad.stderr


def test_processes_that_need_one_classifier_at_once_train_it_once(tmp_path, monkeypatch):
    """Search workers start together: the first trains the classifier under the cache file's lock, the others wait
    and read it (threads here: each opens the lock file itself, so they contend as processes do)."""
    import threading
    import time

    trained, real = [], extractors.train_classifier

    def slow_training(*args):
        trained.append(1)
        time.sleep(0.3)  # long enough for the other thread to arrive while this one holds the lock
        return real(*args)

    monkeypatch.setattr(extractors, "train_classifier", slow_training)
    images, labels = torch.rand(40, 1, 8, 8) * 2 - 1, torch.arange(40) % 2
    results = []
    threads = [threading.Thread(target=lambda: results.append(extractors.cached_classifier(
        images, labels, 2, tmp_path, "toy", torch.device("cpu"), epochs=1))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(trained) == 1 and len(results) == 3
    assert all(quality == results[0][1] for _, quality in results)
