"""Looking inside trained networks: class probabilities under corruption, severity sweeps with
reliability data, and the b×b similarity maps that TGD distils (used by the app's views).

Every network is a :class:`~tgd_core.nets.network.Network` (model, input kind, PI
representation, normalisation): raw networks read the images, PI networks the persistence
images of the same (possibly corrupted) images in their own representation
(:meth:`Network.input_for`), scaled /255 and normalised with their own statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from tgd_core.core.errors import TGDError
from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from tgd_core.data.images import as_image_batch
from tgd_core.data.normalization import to_model_input
from tgd_core.distill import losses
from tgd_core.evaluation.metrics import ReliabilityBin, evaluate_logits, predict_logits
from tgd_core.nets.network import Network

CIFAR_SIDE = 32
GROUPS = 3  # the Wide-ResNet's three groups: the layers whose similarity maps TGD matches
Progress = Callable[[float, str], None]


def to_cifar_size(image: np.ndarray) -> np.ndarray:
    """One image (H×W, H×W×C) as uint8 32×32×3: grey replicated, alpha dropped, resized with
    PIL's area-averaging (``Image.BOX``) when it is not 32×32 already."""
    from PIL import Image

    rgb = as_image_batch(image, channels=3)[0]
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.round(rgb * 255 if rgb.max() <= 1 else rgb), 0, 255).astype(np.uint8)
    if rgb.shape[:2] == (CIFAR_SIDE, CIFAR_SIDE):
        return rgb
    return np.array(Image.fromarray(rgb).resize((CIFAR_SIDE, CIFAR_SIDE), Image.BOX))


@lru_cache(maxsize=2)
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    from tgd_core.data.datasets import load_cifar10

    return load_cifar10(split)


def dataset_sample(n: int, seed: int = 0, split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """``n`` CIFAR-10 images and labels drawn without replacement (the split is read once)."""
    images, labels = _split(split)
    if not 1 <= n <= len(images):
        raise TGDError(f"sample size must lie in 1..{len(images)}, got {n}")
    index = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    return images[index], labels[index]


def corrupt_image(image: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """A uint8 H×W×3 image under a CIFAR-10-C corruption; severity 0 returns it unchanged."""
    if severity == 0:
        return image
    if severity not in SEVERITIES:
        raise TGDError(f"severity must be 0 (clean) or one of {SEVERITIES}, got {severity}")
    return corrupt(image[None], corruption, int(severity), seed=seed)[0]


class _Inputs:
    """What each network reads for one image batch (:meth:`Network.input_for`), computed once
    per input kind and PI representation."""

    def __init__(self, images: np.ndarray) -> None:
        self.images, self._cache = images, {}

    def of(self, net: Network) -> np.ndarray:
        key = (net.input_kind, net.representation if net.input_kind == "pi" else None)
        if key not in self._cache:
            self._cache[key] = net.input_for(self.images)
        return self._cache[key]


def predict_probabilities(networks: Mapping[str, Network], images: np.ndarray
                          ) -> dict[str, np.ndarray]:
    """Softmax class probabilities (N×classes float64) of each named network."""
    inputs = _Inputs(np.asarray(images))
    return {name: torch.softmax(predict_logits(net.model, inputs.of(net),
                                               net.normalization).double(), 1).numpy()
            for name, net in networks.items()}


@dataclass
class SweepResult:
    """Accuracy/ECE rows (model, severity, accuracy, nll, ece, n) and reliability bins per
    (model, severity)."""

    corruption: str
    rows: list[dict] = field(default_factory=list)
    reliability: dict[tuple[str, int], list[ReliabilityBin]] = field(default_factory=dict)

    def accuracy(self, model: str) -> list[tuple[int, float]]:
        """(severity, accuracy %) of one model, in severity order."""
        return [(r["severity"], r["accuracy"]) for r in self.rows if r["model"] == model]


def severity_sweep(networks: Mapping[str, Network], images: np.ndarray, labels: np.ndarray,
                   corruption: str, severities: Sequence[int] = (0, *SEVERITIES),
                   seed: int = 0, progress: Progress | None = None) -> SweepResult:
    """Evaluate every network on ``images`` under ``corruption`` at each severity (0: clean).
    ``progress(fraction, message)`` is called before each (severity, network) step."""
    if corruption not in CORRUPTIONS:
        raise TGDError(f"unknown corruption {corruption!r}; choose from {sorted(CORRUPTIONS)}")
    if not networks:
        raise TGDError("no networks to evaluate")
    if len(images) != len(labels) or len(images) == 0:
        raise TGDError(f"need as many labels as images (at least 1), got {len(images)} and "
                       f"{len(labels)}")
    result = SweepResult(corruption)
    steps, done = len(severities) * len(networks), 0
    for severity in severities:
        batch = images if severity == 0 else corrupt(images, corruption, severity, seed=seed)
        inputs = _Inputs(batch)
        for name, net in networks.items():
            if progress is not None:
                progress(done / steps, f"{name}, severity {severity}")
            logits = predict_logits(net.model, inputs.of(net), net.normalization)
            ev = evaluate_logits(logits, labels)
            result.rows.append({"model": name, "severity": int(severity), **ev.summary()})
            result.reliability[(name, int(severity))] = ev.reliability
            done += 1
    if progress is not None:
        progress(1.0, "done")
    return result


@dataclass
class SimilarityMaps:
    """Row-normalised b×b similarity maps G̃ per group (index 0..2) for each network present
    (``T1``, ``T2``, ``merged`` = row_normalise(α·G_T1 + (1−α)·G_T2), ``student``), and the
    student's per-group similarity loss mean((G̃_S − G̃_target)²) against ``target``."""

    alpha: float
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    target: str | None = None
    losses: list[float] | None = None


def _features(net: Network, images: np.ndarray) -> list[torch.Tensor]:
    with torch.inference_mode():
        x = to_model_input(images, net.normalization)
        _, feats = net.model.eval()(x, return_features=True)
    return feats


def similarity_maps(images: np.ndarray, t1: Network | None = None, t2: Network | None = None,
                    student: Network | None = None, alpha: float = 0.99) -> SimilarityMaps:
    """The similarity maps TGD distils, for a batch of uint8 N×H×W×3 images (N ≥ 2)."""
    if not 0 <= alpha <= 1:
        raise TGDError(f"alpha must lie in [0, 1], got {alpha}")
    images = np.asarray(images)
    if images.ndim != 4 or len(images) < 2:
        raise TGDError(f"need a batch of at least 2 images, got shape {images.shape}")
    inputs = _Inputs(images)
    feats = {name: _features(net, inputs.of(net))
             for name, net in (("T1", t1), ("T2", t2), ("student", student)) if net is not None}
    out = SimilarityMaps(alpha=float(alpha))
    targets: dict[str, list[torch.Tensor]] = {}
    for name, fs in feats.items():
        g = [losses.row_normalise(losses.similarity_matrix(f)) for f in fs]
        out.maps[name] = [m.numpy() for m in g]
        if name != "student":
            targets[name] = g
    if "T1" in feats and "T2" in feats:
        targets["merged"] = [losses.merged_teacher_similarity([a, b], [alpha, 1 - alpha])
                             for a, b in zip(feats["T1"], feats["T2"], strict=True)]
        out.maps["merged"] = [m.numpy() for m in targets["merged"]]
    out.maps = {k: out.maps[k] for k in ("T1", "T2", "merged", "student") if k in out.maps}
    if "student" in feats and targets:
        out.target = next(k for k in ("merged", "T1", "T2") if k in targets)
        out.losses = [float(losses.similarity_loss(f, t))
                      for f, t in zip(feats["student"], targets[out.target], strict=True)]
    return out
