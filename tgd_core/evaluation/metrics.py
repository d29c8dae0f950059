"""Evaluation: batched inference, top-1 accuracy, NLL, ECE and reliability diagrams, and
robustness sweeps over corrupted test inputs (TGD_METHOD.md §6).

- Accuracy: percentage of samples whose arg-max logit is the label.
- NLL: mean −log softmax(z)_y in nats.
- ECE (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017, eq. 3): confidences
  (max softmax probability) split into B = 15 equal-width bins (i/B, (i+1)/B];
  ECE = Σ_b (|b|/n) · |acc(b) − conf(b)|. The reliability diagram is the per-bin
  (confidence, accuracy, count).
"""

from __future__ import annotations

import contextlib
import csv
import io
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write, check_replaceable, json_text
from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES
from tgd_core.data.images import content_hash
from tgd_core.data.normalization import Normalization, to_model_input
from tgd_core.evaluation.sweep import Condition, applied, conditions

ECE_BINS = 15


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram; ``confidence``/``accuracy`` are None when empty."""

    lower: float
    upper: float
    count: int
    confidence: float | None
    accuracy: float | None


@dataclass
class EvaluationResult:
    accuracy: float  # top-1, percent
    nll: float  # nats per sample
    ece: float  # fraction in [0, 1]
    n: int
    reliability: list[ReliabilityBin] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """``{"accuracy", "nll", "ece", "n"}`` with accuracy in percent rounded to 2 decimals."""
        return {"accuracy": round(self.accuracy, 2), "nll": self.nll, "ece": self.ece, "n": self.n}

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "reliability": [asdict(b) for b in self.reliability]}


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily use ``num_threads`` intra-op CPU threads (None: leave as is)."""
    if num_threads is None:
        yield
        return
    if num_threads < 1:
        raise TGDError(f"number of threads must be >= 1, got {num_threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def pi_input(representation: dict[str, Any] | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Images → what a PI network reads: the uint8 PI stacks of ``representation`` (paper mode
    by default), channels last (N×rows×cols×K) like images
    (:func:`tgd_core.nets.network.input_transform`)."""
    from tgd_core.nets.network import input_transform

    return input_transform("pi", representation)


def model_input_transform(input_kind: str, config: dict[str, Any] | None = None
                          ) -> Callable[[np.ndarray], np.ndarray] | None:
    """None for raw-image networks; the PI transform (representation from the training config)
    for PI networks — so corrupted images are evaluated through their own PIs."""
    from tgd_core.nets.network import input_transform

    return input_transform(input_kind, (config or {}).get("pi"))


def predict_logits(model: nn.Module, images: np.ndarray, normalization: Normalization, *,
                   batch_size: int = 500, num_threads: int | None = None,
                   device: torch.device | str = "cpu", progress: bool | None = False,
                   desc: str = "evaluate",
                   transform: Callable[[np.ndarray], np.ndarray] | None = None) -> torch.Tensor:
    """Logits (float32, CPU, N×classes) of ``model`` in eval mode for N×H×W×C ``images``;
    ``transform`` maps each chunk of images to the model's input (e.g. :func:`pi_input`).

    ``progress``: True shows a tqdm bar on stderr, None shows it only when stderr is a terminal.
    The model's train/eval mode is restored afterwards.
    """
    if batch_size < 1:
        raise TGDError(f"batch size must be >= 1, got {batch_size}")
    was_training = model.training
    model.eval()
    outputs = []
    bar = tqdm(total=len(images), desc=desc, unit="img", file=sys.stderr, leave=False,
               disable=None if progress is None else not progress)
    try:
        with torch_threads(num_threads), torch.inference_mode():
            for start in range(0, len(images), batch_size):
                chunk = images[start:start + batch_size]
                x = transform(chunk) if transform is not None else chunk
                outputs.append(model(to_model_input(x, normalization, device)).float())
                bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    if not outputs:
        raise TGDError("no images to evaluate")
    return torch.cat(outputs).cpu()  # one copy back: no host sync per batch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent; a sample whose logits are not all finite counts as wrong
    (``argmax`` takes NaN for the maximum: all-NaN logits would score class 0 right)."""
    if len(labels) == 0:
        raise TGDError("accuracy of an empty set")
    right = (logits.argmax(1) == labels) & torch.isfinite(logits).all(1)
    return 100.0 * int(right.sum()) / len(labels)


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean −log p(y|x) in nats, computed in float64."""
    return float(torch.nn.functional.cross_entropy(logits.double(), labels))


def reliability_bins(confidences: Sequence[float] | np.ndarray,
                     correct: Sequence[bool] | np.ndarray,
                     n_bins: int = ECE_BINS) -> list[ReliabilityBin]:
    """Equal-width bins (i/B, (i+1)/B] of the confidences, with mean confidence and accuracy."""
    conf = np.asarray(confidences, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.shape != hit.shape or conf.ndim != 1:
        raise TGDError(f"confidences {conf.shape} and correct {hit.shape} must be equal 1-D")
    if conf.size and (conf.min() < 0 or conf.max() > 1):
        raise TGDError("confidences must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], conf, side="left")  # conf in (e_i, e_i+1] -> i
    bins = []
    for i in range(n_bins):
        mask = index == i
        count = int(mask.sum())
        bins.append(ReliabilityBin(
            lower=float(edges[i]), upper=float(edges[i + 1]), count=count,
            confidence=float(conf[mask].mean()) if count else None,
            accuracy=float(hit[mask].mean()) if count else None,
        ))
    return bins


def expected_calibration_error(bins: Iterable[ReliabilityBin]) -> float:
    """ECE = Σ_b (|b|/n)·|acc(b) − conf(b)| over reliability bins."""
    bins = list(bins)
    n = sum(b.count for b in bins)
    if n == 0:
        raise TGDError("ECE of an empty set")
    return float(sum(b.count / n * abs(b.accuracy - b.confidence) for b in bins if b.count))


def evaluate_logits(logits: torch.Tensor, labels: np.ndarray | torch.Tensor,
                    n_bins: int = ECE_BINS) -> EvaluationResult:
    """Accuracy, NLL, ECE and reliability data of N×classes logits against N labels."""
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    if logits.ndim != 2 or len(logits) != len(labels):
        raise TGDError(f"logits {tuple(logits.shape)} do not match {len(labels)} labels")
    probs = torch.softmax(logits.double(), dim=1)
    conf, pred = probs.max(dim=1)
    bins = reliability_bins(conf.numpy(), (pred == labels).numpy(), n_bins)
    return EvaluationResult(accuracy=accuracy(logits, labels),
                            nll=negative_log_likelihood(logits, labels),
                            ece=expected_calibration_error(bins), n=len(labels), reliability=bins)


def evaluate_model(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                   normalization: Normalization, *, n_bins: int = ECE_BINS,
                   **inference: Any) -> EvaluationResult:
    """:func:`predict_logits` then :func:`evaluate_logits`; ``inference`` goes to the former."""
    if len(images) != len(labels):
        raise TGDError(f"{len(images)} images but {len(labels)} labels")
    return evaluate_logits(predict_logits(model, images, normalization, **inference), labels,
                           n_bins)


def robustness_sweep(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                     normalization: Normalization, *,
                     corruptions: Sequence[str] = tuple(CORRUPTIONS),
                     severities: Sequence[int] = SEVERITIES,
                     noise_sigmas: Sequence[float] = (), seed: int = 0, include_clean: bool = True,
                     corrupted_cache: dict | None = None,
                     **inference: Any) -> list[dict[str, Any]]:
    """Evaluate on clean, CIFAR-10-C-corrupted (types × severities) and Gaussian-noised inputs.

    Each row: ``corruption``, ``severity`` (0 for clean), ``sigma`` (noise rows), ``accuracy``,
    ``nll``, ``ece``, ``n``. Every corruption uses the same ``seed``. ``corrupted_cache`` (a
    dict) keeps the corrupted images for the next call on the same images: models compared on
    one sweep corrupt the images once.
    """
    return evaluate_conditions(
        model, images, labels, normalization,
        conditions(corruptions, severities, noise_sigmas, clean=include_clean), seed=seed,
        corrupted_cache=corrupted_cache, **inference)


def evaluate_conditions(model: nn.Module, images: np.ndarray, labels: np.ndarray,
                        normalization: Normalization, sweep: Iterable[Condition], *,
                        seed: int = 0, corrupted_cache: dict | None = None,
                        workers: int | None = None, **inference: Any) -> list[dict[str, Any]]:
    """One table row per condition of ``sweep`` (see :func:`robustness_sweep`), in order; the
    images under the conditions not in ``corrupted_cache`` are made by ``workers`` processes
    ahead of the model (:func:`~tgd_core.evaluation.sweep.applied`; None: every CPU, for a
    large sweep)."""
    sweep = list(sweep)
    images_key = content_hash(images) if corrupted_cache is not None else None
    cache = corrupted_cache if corrupted_cache is not None else {}
    missing = [c for c in sweep if (c, seed, images_key) not in cache]
    if corrupted_cache is not None:
        missing = list(dict.fromkeys(missing))  # each made once, then read from the cache
    fresh = applied(missing, images, seed, workers=workers)
    rows = []
    try:
        for condition in sweep:
            x = cache.get((condition, seed, images_key))
            if x is None:
                made, x = next(fresh)
                assert made == condition
                if corrupted_cache is not None:
                    corrupted_cache[(condition, seed, images_key)] = x
            result = evaluate_model(model, x, labels, normalization, desc=condition.label,
                                    **inference)
            rows.append(condition.row(result.summary()))
    finally:
        fresh.close()
    return rows


TABLE_SUFFIXES = (".csv", ".json")


def check_table_path(path: str | Path) -> None:
    """TGDError unless :func:`write_table` can write ``path``: a .csv or .json name, not a
    folder or a device (:func:`check_replaceable`). Checked before a sweep, so a bad name
    fails at once, not after the work."""
    path = Path(path)
    if path.suffix.lower() not in TABLE_SUFFIXES:
        raise TGDError(f"{path}: table format must be .csv or .json")
    check_replaceable(path)


def write_table(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write sweep rows as ``.csv`` or ``.json`` (chosen by the suffix), atomically; in JSON a
    non-finite metric is ``null``."""
    path = Path(path)
    if not rows:
        raise TGDError("no rows to write")
    if path.suffix.lower() == ".json":
        text = json_text(list(rows), indent=2) + "\n"
    elif path.suffix.lower() == ".csv":
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    else:
        check_table_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, text)
