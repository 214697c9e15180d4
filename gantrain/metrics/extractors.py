"""Feature extractors behind one interface: images (uint8, N x C x H x W) -> (features, class probabilities).

`inception`: the FID Inception-v3 (TensorFlow 2015-12-05 weights) of pytorch-fid / torch-fidelity /
clean-fid, through torch-fidelity, with its TF-1.x-compatible resize to 299x299: numbers comparable with
published tables. `classifier`: a small CNN gantrain trains once on the real training split (cached),
whose penultimate layer gives domain features and whose softmax gives a classifier Inception Score.
"""

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gantrain.checkpoint import atomic_save
from gantrain.data.batches import to_model_range  # the classifier sees what the GAN sees: [-1, 1]
from gantrain.errors import UserError

log = logging.getLogger(__name__)
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


class Extractor:
    """Runs a network over images in batches without autograd; subclasses say what comes out."""

    name = "extractor"

    def __init__(self, network: nn.Module, device: torch.device, batch_size: int = 500):
        self.network, self.device, self.batch_size = network.to(device).eval(), device, batch_size

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
            raise UserError(f"metrics.inception_weights={path} is not a plain PyTorch weights file ({str(err).splitlines()[0][:120]})") from err
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

    name = "inception"

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

    def __init__(self, channels: int, num_classes: int, width: int = 64, feature_dim: int = 128):
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
                     seed: int = 0, batch_size: int = 128) -> SmallClassifier:
    """A classifier of uint8 images (N, C, H, W): Adam 1e-3, a few epochs, seeded."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
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


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor, device: torch.device, batch_size: int = 500) -> float:
    correct = 0
    for x, y in zip(images.split(batch_size), labels.split(batch_size)):
        correct += int((net(to_model_range(x).to(device))[1].argmax(1).cpu() == y).sum())
    return correct / max(len(images), 1)


class ClassifierExtractor(Extractor):
    """Penultimate (128-d) features and softmax probabilities of a classifier trained on the real data."""

    name = "classifier"

    def prepare(self, images: Tensor) -> Tensor:
        return to_model_range(images)

    def outputs(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        features, logits = self.network(batch)
        return features, F.softmax(logits.double(), dim=1)


def cached_classifier(images: Tensor, labels: Tensor, num_classes: int, cache: Path, key: str, device: torch.device,
                      epochs: int = 3) -> SmallClassifier:
    """The classifier for this data, trained once and kept as `cache/classifier-<key>.pt` (weights only)."""
    path = cache / f"classifier-{key}.pt"
    net = SmallClassifier(images.shape[1], num_classes)
    if path.is_file():
        try:
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return net.to(device).eval()
        except Exception as err:
            log.warning("retraining the evaluation classifier: %s is unreadable (%s)", path, str(err).splitlines()[0][:100])
    log.info("training the evaluation classifier on %d real images (once; cached in %s)", len(images), path)
    net = train_classifier(images, labels, num_classes, device, epochs)
    atomic_save(net.state_dict(), path)
    return net
