"""Datasets as arrays: CIFAR-10 in the official "python version" layout.

``load_cifar10(split)`` returns uint8 N×32×32×3 images (RGB) and int64 labels from
``<data dir>/cifar10`` (``TGD_DATA_DIR``, see :mod:`tgd_core.config`). Splits: ``train``
(data_batch_1..5), ``test`` (test_batch), ``test_lossless_1k`` (test_batch_lossless_1k).
With ``download=True`` and no files, torchvision fetches the official archive (needs a network).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tgd_core import config
from tgd_core.errors import TGDError

CIFAR10_SPLITS = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
    "test_lossless_1k": ["test_batch_lossless_1k"],
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def cifar10_dir(data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir is not None else config.data_dir()
    # accept both <root>/cifar10 and torchvision's <root>/cifar-10-batches-py
    for name in ("cifar10", "cifar-10-batches-py"):
        if (root / name).is_dir():
            return root / name
    if (root / "data_batch_1").exists() or (root / "test_batch").exists():
        return root
    return root / "cifar10"


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except FileNotFoundError:
        raise TGDError(f"{path}: missing CIFAR-10 batch file") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise TGDError(f"{path}: not a CIFAR-10 python-version batch ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise TGDError(f"{path}: malformed batch: data {data.shape}, {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10(split: str = "train", data_dir: str | Path | None = None,
                 download: bool = False, limit: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` as (uint8 N×32×32×3 RGB images, int64 labels); with ``limit``, the
    first ``limit`` images, reading only the batch files that hold them."""
    if split not in CIFAR10_SPLITS:
        raise TGDError(f"unknown CIFAR-10 split {split!r}; choose from {sorted(CIFAR10_SPLITS)}")
    folder = cifar10_dir(data_dir)
    if not folder.is_dir() and download:
        import torchvision

        torchvision.datasets.CIFAR10(str(folder.parent), train=True, download=True)
        folder = cifar10_dir(folder.parent)
    if not folder.is_dir():
        raise TGDError(
            f"CIFAR-10 not found in {folder}: set TGD_DATA_DIR to a folder holding cifar10/ "
            "(the official python-version batches), or pass download=True with a network"
        )
    parts, count = [], 0
    for name in CIFAR10_SPLITS[split]:
        if limit is not None and count >= limit:
            break
        parts.append(_read_batch(folder / name))
        count += len(parts[-1][1])
    images = np.ascontiguousarray(np.concatenate([p[0] for p in parts])[:limit])
    labels = np.concatenate([p[1] for p in parts])[:limit]
    return images, labels
