"""Scores generated images against real ones: FID, KID, IS, precision/recall, class accuracy and TSTR.

Real features are computed once per (data, split, resolution, extractor) and cached on disk, so an
evaluation costs only the generated side. The same Evaluator serves training (`trainer.eval_every`)
and `gantrain-eval`.
"""

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from gantrain.caches import cache_dir, read_or_compute
from gantrain.data import Data, TensorData
from gantrain.data.batches import skipped_rows
from gantrain.data.pixels import to_uint8
from gantrain.device import resolve_device
from gantrain.errors import UserError
from gantrain.files import atomic_save
from gantrain.metrics import maths
from gantrain.metrics.extractors import (
    ClassifierExtractor,
    InceptionExtractor,
    accuracy,
    cached_classifier,
    describe,
    train_classifier,
    weakness,
)
from gantrain.training.objective import HIGHER_IS_BETTER, METRICS

log = logging.getLogger(__name__)
CACHE_VERSION = 1


def real_images(data: Data, limit: int, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """Up to `limit` real images as uint8 (N, C, H, W) with their labels, chosen by a seeded permutation."""
    if not data.is_image:
        raise UserError(f"metrics compare images; data={data.name} holds points: drop trainer.eval_every")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    if isinstance(data, TensorData):
        return data.x[order], data.labels[order] if data.labels is not None else None
    parts = list(DataLoader(Subset(data.dataset, order.tolist()), batch_size=256, num_workers=data.workers))
    images, labels = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    kept = ~skipped_rows(labels)  # files that could not be decoded come back as blank rows: not real images
    images, labels = images[kept], labels[kept]
    return images, labels if data.num_classes else None


class Scores(dict):
    """Metric name -> value, plus `extractor`: the info of what computed them (name, version, sha256, and for
    the classifier its held-out accuracy and real IS), so a report never loses which scale its numbers are on."""

    def __init__(self, values: dict[str, float], extractor: dict):
        super().__init__(values)
        self.extractor = extractor


def fingerprint(images: Tensor, labels: Tensor | None) -> str:
    digest = hashlib.sha1(images.contiguous().numpy().tobytes())
    if labels is not None:
        digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:16]


class Evaluator:
    """evaluator(system, step) -> {"fid": ..., "kid": ..., "is": ..., "precision": ..., "recall": ..., ...}."""

    higher_is_better = HIGHER_IS_BETTER

    def __init__(
        self, data: Data, metrics: list[str] = ("fid", "kid", "is", "pr"), extractor: str = "classifier",
        num_samples: int = 10000, batch_size: int = 500, real_samples: int = 50000, test_data: Data | None = None,
        inception_weights: str | None = None, kid_subsets: int = 100, kid_subset_size: int = 1000, is_splits: int = 10,
        classifier_epochs: int | str = "auto", device: str = "auto", seed: int = 0,
    ):
        unknown = sorted(set(metrics) - set(METRICS))
        if unknown:
            raise UserError(f"metrics {', '.join(unknown)} unknown: choose from {', '.join(METRICS)}")
        if num_samples < 2 or real_samples < 2:
            raise UserError(f"metrics.num_samples={num_samples}, real_samples={real_samples}: need at least 2 each")
        self.metrics, self.num_samples, self.batch_size, self.seed = list(metrics), num_samples, batch_size, seed
        self.kid_subsets, self.kid_subset_size, self.is_splits = kid_subsets, kid_subset_size, is_splits
        self.device = resolve_device(device)
        self.data, self.test_data, self.cache = data, test_data, cache_dir("metrics")
        self.real, self.real_labels = real_images(data, real_samples, seed)
        self.key = f"{data.name}-{fingerprint(self.real, self.real_labels)}-{'x'.join(map(str, data.shape))}"
        self.classifier, quality = None, {}
        if extractor == "classifier" or "tstr" in self.metrics or "accuracy" in self.metrics:
            if self.real_labels is None:
                raise UserError(f"extractor=classifier (and accuracy, tstr) need labelled real data; data={data.name} has "
                                f"no labels: use extractor=inception")
            self.classifier, quality = cached_classifier(self.real, self.real_labels, data.num_classes, self.cache,
                                                         self.key, self.device, classifier_epochs, seed)
        if extractor == "classifier":
            self.extractor = ClassifierExtractor(self.classifier, self.device, batch_size, quality)
        elif extractor == "inception":
            self.extractor = InceptionExtractor(self.device, min(batch_size, 100), inception_weights)
        else:
            raise UserError(f"extractor={extractor}: use classifier or inception")
        self.report(quality)
        self.real_features = self.cached_real_features()
        self._manifold: tuple[np.ndarray, np.ndarray] | None = None
        dim = self.real_features.shape[1]
        if "fid" in self.metrics and min(num_samples, len(self.real_features)) <= dim:
            # said now, not after hours of training: FID's covariances are singular with fewer samples than features
            log.warning("metrics.num_samples=%d and %d real images for %d-dimensional features: FID needs more "
                        "samples than features and may be refused; use num_samples well above %d",
                        num_samples, len(self.real_features), dim, dim)

    def report(self, quality: dict) -> None:
        """Once per evaluator (training logs it once): which extractor scores, and whether the classifier is weak
        (accuracy and tstr use it under either extractor)."""
        log.info("extractor: %s", describe(self.extractor.info))
        warning = weakness(quality, self.data.num_classes) if quality else None
        if warning:
            log.warning(warning)

    def cached_real_features(self) -> np.ndarray:
        """The real side's features, computed once per data, split, size and extractor (its weights' sha: the
        features of another classifier are other features)."""
        info = self.extractor.info
        path = self.cache / f"realfeatures-{info['name']}-{info['sha256']}-{self.key}-v{CACHE_VERSION}.pt"
        return read_or_compute(path, lambda: saved_features(path), lambda: self.computed_features(path))

    def computed_features(self, path: Path) -> np.ndarray:
        """The real side's features, computed and written to the cache file `path`."""
        features, _ = self.extractor(self.real)
        atomic_save({"features": torch.from_numpy(features).float()}, path)
        return features

    # ---------------------------------------------------------------- scoring
    def reported(self) -> list[str]:
        """The names the scores come under (pr gives precision and recall; a conditional run adds accuracy)."""
        names = {"pr": ["precision", "recall"]}
        return [name for metric in self.metrics for name in names.get(metric, [metric])] + (
            ["accuracy"] if self.data.num_classes and "accuracy" not in self.metrics else [])

    def __call__(self, system, step: int | None = None, sample_seed: int | None = None) -> Scores:
        """Generate num_samples images (EMA generator when present), in batches without autograd, and score them."""
        if not system.draws_samples:
            raise UserError(f"the metrics score generated samples; a {type(system).__name__} does not draw them from "
                            f"noise (translate a folder with gantrain-sample, then gantrain-eval real=... fake=<folder>)")
        classes = system.num_classes
        labels = torch.arange(self.num_samples) % classes if classes else None
        kwargs = {"labels": labels} if labels is not None else {}
        fake = system.sample(self.num_samples, self.batch_size, torch.Generator().manual_seed(
            self.seed + 1 if sample_seed is None else sample_seed), **kwargs)
        return self.score(to_uint8(fake), labels)

    def score(self, fake: Tensor, fake_labels: Tensor | None = None) -> Scores:
        """Metrics of uint8 images (N, C, H, W) (with the labels they were drawn for, if conditional)."""
        if tuple(fake.shape[1:]) != tuple(self.real.shape[1:]):
            raise UserError(f"generated images are {'x'.join(map(str, fake.shape[1:]))}, real ones "
                            f"{'x'.join(map(str, self.real.shape[1:]))}: evaluate against data of the same size")
        features, probs = self.extractor(fake)
        out: dict[str, float] = {}
        if "fid" in self.metrics:
            out["fid"] = maths.fid(self.real_features, features)
        if "kid" in self.metrics:
            out["kid"], out["kid_std"] = maths.kid(self.real_features, features, self.kid_subsets, self.kid_subset_size, self.seed)
        if "is" in self.metrics:
            out["is"], out["is_std"] = maths.inception_score(probs, self.is_splits)
        if "pr" in self.metrics:
            real, radii = self.real_manifold(len(features))
            out["precision"], out["recall"] = maths.precision_recall(real, features, real_radii=radii)
        if fake_labels is not None and self.classifier is not None:  # conditional: always report class accuracy
            out["accuracy"] = accuracy(self.classifier, fake, fake_labels, self.device)
        if "tstr" in self.metrics:
            out["tstr"] = self.tstr(fake, fake_labels)
        return Scores(out, self.extractor.info)

    def real_manifold(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """As many real features as fakes (precision/recall compare sets of equal size, as in Kynkaanniemi
        et al.), with their k-NN radii, kept for the next evaluation of the same size."""
        if self._manifold is None or len(self._manifold[0]) != min(n, len(self.real_features)):
            pick = np.random.RandomState(self.seed).permutation(len(self.real_features))[:n]
            real = self.real_features[np.sort(pick)]
            self._manifold = real, maths.knn_radii(real)
        return self._manifold

    def tstr(self, fake: Tensor, fake_labels: Tensor | None) -> float:
        """Train on synthetic, test on real: a classifier learns from the generated labelled images and is
        scored on the real test split (seed 004's suggestion; Esteban et al.)."""
        if fake_labels is None:
            raise UserError("metric tstr needs a conditional model (or fake images with labels)")
        if self.test_data is None:
            raise UserError("metric tstr needs the real test split: evaluate a data set that has one (mnist, cifar10, ...)")
        test_images, test_labels = real_images(self.test_data, 10**9, self.seed)
        net = train_classifier(fake, fake_labels, self.data.num_classes, self.device, epochs=3, seed=self.seed)
        return accuracy(net, test_images, test_labels, self.device)


def saved_features(path: Path) -> np.ndarray | None:
    if path.is_file():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)["features"].double().numpy()
        except Exception:
            log.warning("recomputing real features: %s is unreadable", path)
    return None
