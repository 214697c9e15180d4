"""Feature extractors behind one interface: images (uint8, N x C x H x W) -> (features, class probabilities).

`inception`: the FID Inception-v3 (TensorFlow 2015-12-05 weights) of pytorch-fid / torch-fidelity /
clean-fid, through torch-fidelity, with its TF-1.x-compatible resize to 299x299: numbers comparable with
published tables. `classifier`: a small CNN gantrain trains once on the real training split (cached),
whose penultimate layer gives domain features and whose softmax gives a classifier Inception Score. It is
measured on a seeded held-out part of the real images (accuracy, IS of real images), and every extractor
names itself (name, version, sha256 of its weights), so numbers of different extractors are never mixed up.
"""

import hashlib
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.caches import read_or_compute
from gantrain.data.pixels import to_model_range  # the classifier sees what the GAN sees: [-1, 1]
from gantrain.errors import UserError, first_line
from gantrain.files import atomic_save
from gantrain.metrics import maths

log = logging.getLogger(__name__)
EXTRACTOR_VERSION = 2  # the classifier's recipe (architecture, training, held-out split); bump when it changes
MIN_STEPS, MIN_EPOCHS = 500, 3  # classifier_epochs=auto: held-out accuracy levels off by 250-500 steps on small sets
BATCH = 128  # the classifier's training batch
WEAK_ACCURACY = 0.9  # below this held-out accuracy (or a real IS under half the classes) the classifier is weak
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class Extractor:
    """Runs a network over images in batches without autograd; subclasses say what comes out.
    `info` names it (name, version, short sha256 of its weights) for reports and cache keys."""

    name, version = "extractor", "0"

    def __init__(self, network: nn.Module, device: torch.device, batch_size: int = 500):
        self.network, self.device, self.batch_size = network.to(device).eval(), device, batch_size
        self.info = {"name": self.name, "version": self.version, "sha256": weights_sha(self.network)}

    def prepare(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def outputs(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, images: Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(features (N, d), probabilities (N, K)) as float64 arrays."""
        feats, probs = [], []
        for part in images.split(self.batch_size):
            f, p = self.outputs(self.prepare(part).to(self.device))
            feats.append(f.double().cpu())
            probs.append(p.double().cpu())
        return torch.cat(feats).numpy(), torch.cat(probs).numpy()


def weights_sha(network: nn.Module) -> str:
    """A short sha256 of every parameter and buffer: two extractors with equal shas compute the same numbers."""
    digest = hashlib.sha256()
    for name, tensor in sorted(network.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:8]


def describe(info: dict) -> str:
    """`classifier v2 (sha 1a2b3c4d), held-out accuracy 0.985, real IS 9.1`: one line for tables and logs."""
    text = f"{info['name']} v{info['version']} (sha {info['sha256']})"
    if "heldout_accuracy" in info:
        text += f", held-out accuracy {info['heldout_accuracy']:.3f}, real IS {info['real_is']:.3g}"
    return text


# ------------------------------------------------------------------------------ Inception
def hub_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_network(weights: str | None):
    """torch-fidelity's FID Inception; the weights file is checked to hold only tensors before use."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    path = Path(weights).expanduser() if weights else hub_weights_path()
    if path.is_file():
        try:
            torch.load(path, map_location="cpu", weights_only=True)  # refuses a file that would run code
        except Exception as err:
            raise UserError(f"metrics.inception_weights={path} is not a plain PyTorch weights file ({first_line(err, 120)})") from err
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path))
    if weights:
        raise UserError(f"metrics.inception_weights={weights} does not exist: download {INCEPTION_URL} there")
    try:  # the one-time download into torch's hub cache
        return FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])
    except Exception as err:  # offline: say exactly what to fetch and where
        raise UserError(
            f"the FID Inception weights are not here and cannot be downloaded ({type(err).__name__}): fetch "
            f"{INCEPTION_URL} and either put it at {hub_weights_path()} or pass metrics.inception_weights=<file> "
            f"(gantrain-eval: inception_weights=<file>); or use extractor=classifier, which works offline"
        ) from err


class InceptionExtractor(Extractor):
    """2048-d pool features and the 1008-way logits (for IS) of the FID Inception-v3."""

    name, version = "inception", "2015-12-05"

    def __init__(self, device: torch.device, batch_size: int = 100, weights: str | None = None, network: nn.Module | None = None):
        super().__init__(network if network is not None else inception_network(weights), device, batch_size)

    def prepare(self, images: Tensor) -> Tensor:
        return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images  # uint8, resized inside

    def outputs(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.network(batch)
        return features, F.softmax(logits.double(), dim=1)


# ------------------------------------------------------------------------------ classifier
class SmallClassifier(nn.Module):
    """Conv-BN-ReLU x2, pool, x2, pool, global average, FC 128 (the features), FC K."""

    WIDTH = 64  # part of the cache key (classifier_key)

    def __init__(self, channels: int, num_classes: int, width: int = WIDTH, feature_dim: int = 128):
        super().__init__()

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(True)]

        self.body = nn.Sequential(
            *block(channels, width // 2), *block(width // 2, width // 2), nn.MaxPool2d(2),
            *block(width // 2, width), *block(width, width), nn.MaxPool2d(2),
            *block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(2 * width, feature_dim), nn.ReLU(True),
        )
        self.head = nn.Linear(feature_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.body(x)
        return features, self.head(features)


def train_classifier(images: Tensor, labels: Tensor, num_classes: int, device: torch.device, epochs: int = 3,
                     seed: int = 0, batch_size: int = BATCH) -> SmallClassifier:
    """A classifier of uint8 images (N, C, H, W): Adam 1e-3, `epochs` passes, seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the initial weights from `seed`, the caller's CPU RNG untouched
        torch.default_generator.manual_seed(seed)  # only the forked (CPU) generator: CUDA's stays the caller's
        net = SmallClassifier(images.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=generator)
        for idx in order.split(batch_size):
            x = to_model_range(images[idx]).to(device)
            loss = F.cross_entropy(net(x)[1], labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def resolve_epochs(epochs: int | str, train_images: int, batch_size: int = BATCH) -> int:
    """classifier_epochs: `auto` is enough epochs for MIN_STEPS optimizer steps (at least MIN_EPOCHS), so a small
    set is not left with a few dozen steps and a near-uniform classifier; a number is that many epochs."""
    if epochs == "auto":
        return max(MIN_EPOCHS, math.ceil(MIN_STEPS / max(math.ceil(train_images / batch_size), 1)))
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise UserError(f"classifier_epochs={epochs}: use a positive whole number of epochs, or auto")
    return epochs


def holdout_split(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """(training indices, held-out indices): a seeded 10%, at least 300 where a quarter of the set allows
    (an accuracy on fewer images is too coarse), at most 5,000; never empty."""
    held = max(min(max(n // 10, 300), n // 4, 5000), 1)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[held:], order[:held]


def classifier_key(data_key: str, epochs: int, seed: int) -> str:
    """Everything that shapes the classifier: the real images (data_key holds their fingerprint), the epochs as
    resolved, the recipe (EXTRACTOR_VERSION, width) and the seed of the weights and the held-out split."""
    return f"{data_key}-v{EXTRACTOR_VERSION}-w{SmallClassifier.WIDTH}-e{epochs}-s{seed}"


def held_out_quality(net: nn.Module, images: Tensor, labels: Tensor, device: torch.device) -> dict:
    """Accuracy and Inception Score of held-out real images: the scale every other number is read against."""
    _, probs = ClassifierExtractor(net, device)(images)
    return {"heldout_accuracy": float((probs.argmax(1) == labels.numpy()).mean()),
            "real_is": maths.inception_score(probs, splits=1)[0],  # one split: a few hundred images are few
            "heldout_images": len(images)}


def weakness(quality: dict, num_classes: int) -> str | None:
    """The one-line warning for a classifier whose numbers have little meaning, or None when it is good."""
    accuracy, real_is = quality["heldout_accuracy"], quality["real_is"]
    if accuracy >= WEAK_ACCURACY and real_is >= num_classes / 2:
        return None
    return (f"the evaluation classifier is weak (held-out accuracy {accuracy:.3f}, want >= {WEAK_ACCURACY}; real IS "
            f"{real_is:.3g}, want >= {num_classes / 2:g} for {num_classes} classes), so its FID/KID/IS have an unknown "
            f"scale: raise classifier_epochs (now {quality['epochs']}), give it more labelled images (real_samples), "
            f"or use extractor=inception")


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int = 500) -> float:
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += int((net(to_model_range(x).to(device))[1].argmax(1).cpu() == y).sum())
    return correct / max(len(images), 1)


class ClassifierExtractor(Extractor):
    """Penultimate (128-d) features and softmax probabilities of a classifier trained on the real data;
    `quality` (held-out accuracy, real IS) joins its info."""

    name, version = "classifier", str(EXTRACTOR_VERSION)

    def __init__(self, network: nn.Module, device: torch.device, batch_size: int = 500, quality: dict | None = None):
        super().__init__(network, device, batch_size)
        self.info |= quality or {}

    def prepare(self, images: Tensor) -> Tensor:
        return to_model_range(images)

    def outputs(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.network(batch)
        return features, F.softmax(logits.double(), dim=1)


def cached_classifier(images: Tensor, labels: Tensor, num_classes: int, cache: Path, key: str, device: torch.device,
                      epochs: int | str = "auto", seed: int = 0) -> tuple[SmallClassifier, dict]:
    """The classifier for this data and its held-out quality, trained once and kept as
    `cache/classifier-<key>-...pt` = {"weights", "quality", "version"} (tensors and numbers: weights_only loads)."""
    train, _ = holdout_split(len(images), seed)
    epochs = resolve_epochs(epochs, len(train))
    path = cache / f"classifier-{classifier_key(key, epochs, seed)}.pt"
    net = SmallClassifier(images.shape[1], num_classes)
    return read_or_compute(path, lambda: saved_classifier(path, net, device),  # one process trains it
                           lambda: trained_classifier(images, labels, num_classes, path, device, epochs, seed))


def saved_classifier(path: Path, net: SmallClassifier, device: torch.device) -> tuple[SmallClassifier, dict] | None:
    if path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved["version"] == EXTRACTOR_VERSION:
                net.load_state_dict(saved["weights"])
                return net.to(device).eval(), saved["quality"]
        except Exception as err:
            log.warning("retraining the evaluation classifier: %s is unreadable (%s)", path, first_line(err, 100))
    return None


def trained_classifier(images: Tensor, labels: Tensor, num_classes: int, path: Path, device: torch.device,
                       epochs: int, seed: int) -> tuple[SmallClassifier, dict]:
    train, held = holdout_split(len(images), seed)
    log.info("training the evaluation classifier on %d real images, %d epochs (once; cached in %s)", len(train), epochs, path)
    started = time.perf_counter()
    net = train_classifier(images[train], labels[train], num_classes, device, epochs, seed)
    quality = held_out_quality(net, images[held], labels[held], device) | {
        "epochs": epochs, "steps": epochs * math.ceil(len(train) / BATCH), "train_images": len(train),
        "train_seconds": round(time.perf_counter() - started, 1)}
    atomic_save({"weights": net.state_dict(), "quality": quality, "version": EXTRACTOR_VERSION}, path)
    return net, quality
