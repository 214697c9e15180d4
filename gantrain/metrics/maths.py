"""The metric formulas, in float64 from feature arrays, as pytorch-fid and torch-fidelity compute them."""

import warnings

import numpy as np
from scipy import linalg

from gantrain.errors import UserError


def mean_cov(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6,
                     samples: tuple[int, int] | None = None) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrt(S1 S2)) (Heusel et al.; pytorch-fid's numerics). `samples`
    (real, fake counts) only makes the refusal of an ill-conditioned square root name its likely cause."""
    diff = mu1 - mu2
    with warnings.catch_warnings():  # a singular product is handled below, as pytorch-fid does
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():  # a singular product: nudge both diagonals, as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        # rounding leaves tiny imaginary parts; a large one means the square root is meaningless, and
        # pytorch-fid refuses it (same test, same tolerance) rather than report a number off by that much
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise UserError(imaginary_message(np.abs(covmean.imag).max(), sigma1.shape[0], samples))
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def imaginary_message(size: float, dim: int, samples: tuple[int, int] | None) -> str:
    counts = f"{samples[0]} real and {samples[1]} generated samples" if samples else "the samples"
    return (f"FID is undefined here: the covariance square root has an imaginary part of {size:.3g} (pytorch-fid refuses "
            f"above 1e-3), most likely too few samples for the feature dimension ({counts} for {dim} features): use more "
            f"samples (num_samples / real_samples, well above {dim}) or drop fid from metrics")


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    return frechet_distance(*mean_cov(real), *mean_cov(fake), samples=(len(real), len(fake)))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al.): the unbiased MMD^2 with kernel (x.y / d + 1)^3,
    averaged over random subsets (torch-fidelity's defaults); returns (mean, std)."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    d = real.shape[1]
    m = min(len(real), len(fake), subset_size)
    rng = np.random.RandomState(seed)
    values = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)]
        y = real[rng.choice(len(real), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        values.append(within - 2 * kxy.sum() / m**2)
    return float(np.mean(values)), float(np.std(values))


def inception_score(probs: np.ndarray, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) over `splits` chunks (Salimans et al.); returns (mean, std).
    The rows are shuffled first with a fixed seed (torch-fidelity's isc_rng_seed, its chunk bounds too):
    images read from class folders arrive sorted by class, and chunks of one class each score ~1."""
    p = np.asarray(probs, dtype=np.float64)
    p = p[np.random.RandomState(seed).permutation(len(p))]
    scores = []
    for i in range(splits):
        part = p[i * len(p) // splits:(i + 1) * len(p) // splits]
        marginal = part.mean(axis=0, keepdims=True)
        kl = (part * (np.log(part + 1e-20) - np.log(marginal + 1e-20))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def knn_radii(features: np.ndarray, k: int = 3, batch: int = 2048) -> np.ndarray:
    """Distance of each sample to its k-th nearest neighbour in its own set (itself excluded)."""
    f = np.asarray(features, dtype=np.float64)
    radii = np.empty(len(f))
    for start in range(0, len(f), batch):
        dist = pairwise_distances(f[start:start + batch], f)
        radii[start:start + batch] = np.partition(dist, k, axis=1)[:, k]  # index 0 is the sample itself
    return radii


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0))


def coverage_of(manifold: np.ndarray, radii: np.ndarray, queries: np.ndarray, batch: int = 2048) -> float:
    """Fraction of queries inside at least one ball (centre from manifold, radius from radii)."""
    inside = np.zeros(len(queries), dtype=bool)
    for start in range(0, len(queries), batch):
        dist = pairwise_distances(np.asarray(queries[start:start + batch], dtype=np.float64), manifold)
        inside[start:start + batch] = (dist <= radii[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3, real_radii: np.ndarray | None = None) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al.): k-NN balls around each set's samples.
    Precision: share of fakes inside the real manifold; recall: share of reals inside the fake one.
    `real_radii` (knn_radii(real, k)) may be passed in when the same real set is scored again."""
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    precision = coverage_of(real, knn_radii(real, k) if real_radii is None else real_radii, fake)
    recall = coverage_of(fake, knn_radii(fake, k), real)
    return precision, recall
