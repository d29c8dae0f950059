"""Datasets as arrays: CIFAR-10 in the official "python version" layout, CINIC-10 and any
dataset in the ImageFolder layout (``<root>/<split>/<class>/*.png``).

``load_cifar10(split)`` returns uint8 N×32×32×3 images (RGB) and int64 labels from
``<data dir>/cifar10`` (``TGD_DATA_DIR``, see :mod:`tgd_core.core.paths`). Splits: ``train``
(data_batch_1..5), ``test`` (test_batch), ``test_lossless_1k`` (test_batch_lossless_1k).
With ``download=True`` and no files, torchvision fetches the official archive (needs a network).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from tgd_core.core import paths
from tgd_core.core.errors import TGDError

CIFAR10_SPLITS = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
    "test_lossless_1k": ["test_batch_lossless_1k"],
}
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")


def cifar10_dir(data_dir: str | Path | None = None) -> Path:
    root = Path(data_dir) if data_dir is not None else paths.data_dir()
    # accept both <root>/cifar10 and torchvision's <root>/cifar-10-batches-py
    for name in ("cifar10", "cifar-10-batches-py"):
        if (root / name).is_dir():
            return root / name
    if (root / "data_batch_1").exists() or (root / "test_batch").exists():
        return root
    return root / "cifar10"


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR batch holds — dicts, lists, strings, numbers and numpy arrays —
    and refuses any other global: ``pickle.load`` would run whatever callable a crafted file in
    a ``--data-dir`` names."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
               *((f"numpy.{core}.multiarray", name) for core in ("core", "_core")
                 for name in ("_reconstruct", "scalar")),
               *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
               *((builtins, kind) for builtins in ("builtins", "__builtin__")
                 for kind in ("bytes", "bytearray"))}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a CIFAR batch "
                                         "holds only arrays, lists and strings")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A python-version CIFAR-10 batch file as (N×32×32×3 uint8 images, int64 labels in
    0–9), read with :class:`_BatchUnpickler`; TGDError naming the file otherwise."""
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="latin1").load()
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except FileNotFoundError:
        raise TGDError(f"{path}: missing CIFAR-10 batch file") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, OSError,
            AttributeError, IndexError) as exc:
        raise TGDError(f"{path}: not a CIFAR-10 python-version batch ({exc})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (len(data),) or not len(data):
        raise TGDError(f"{path}: malformed batch: data {data.shape}, labels {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(CIFAR10_CLASSES):
        raise TGDError(f"{path}: malformed batch: labels in [{labels.min()}, {labels.max()}], "
                       f"not 0–{len(CIFAR10_CLASSES) - 1}")
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


IMAGE_FOLDER_SPLITS = ("train", "valid", "test")


def image_folder_classes(root: Path, split: str) -> tuple[Path, list[str]]:
    """(the folder that names the classes, the class names) of an ImageFolder: the sorted
    sub-folder names of ``<root>/train``, or of ``<root>/<split>`` when there is no train
    folder, so every split numbers them alike."""
    reference = root / "train" if (root / "train").is_dir() else root / split
    classes = sorted(p.name for p in reference.iterdir() if p.is_dir())
    if not classes:
        raise TGDError(f"{reference}: no class folders")
    return reference, classes


def load_image_folder(root: str | Path, split: str, limit: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``<root>/<split>/<class>/<image>`` as (uint8 N×H×W×3, int64 labels, class names).

    Classes are the sorted sub-folder names of ``<root>/train`` (or of the split itself when
    there is no train folder), so every split numbers them alike; images are sorted by path.
    All images must share one size. With ``limit``, the first ``limit`` images in that order.
    """
    from tgd_core.data.images import IMAGE_SUFFIXES, load_image_file

    root = Path(root)
    folder = root / split
    if not folder.is_dir():
        raise TGDError(f"{folder}: missing; expected the ImageFolder layout "
                       f"<root>/<split>/<class>/*.png with splits {IMAGE_FOLDER_SPLITS}")
    reference, classes = image_folder_classes(root, split)
    files = [(p, i) for i, c in enumerate(classes) if (folder / c).is_dir()
             for p in sorted((folder / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise TGDError(f"{folder}: class folders {unknown} are not in {reference}")
    if not files:
        raise TGDError(f"{folder}: no images in its class folders")
    files = files[:limit]
    images = [load_image_file(p) for p, _ in files]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise TGDError(f"{folder}: images of different sizes {sorted(shapes)[:3]}; resize them "
                       "to one size first")
    return np.stack(images), np.array([i for _, i in files], np.int64), classes


DATASETS = ("cifar10", "cinic10", "imagefolder")


def dataset_splits(dataset: str) -> tuple[str, ...]:
    return tuple(CIFAR10_SPLITS) if dataset == "cifar10" else IMAGE_FOLDER_SPLITS


def dataset_classes(dataset: str, data_dir: str | Path | None = None) -> int:
    """How many classes ``dataset`` has — what a network trained on it predicts, however few
    of them a training subset holds (the first images of an ImageFolder are all of class 0)."""
    if dataset in ("cifar10", "cinic10"):
        return len(CIFAR10_CLASSES)
    return len(image_folder_classes(Path(data_dir), "train")[1])


def load_dataset(dataset: str, split: str, data_dir: str | Path | None = None,
                 limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of ``dataset``: ``cifar10`` (python-version batches in
    ``<data dir>/cifar10``), ``cinic10`` (ImageFolder in ``<data dir>/cinic10``, splits
    train/valid/test) or ``imagefolder`` (``data_dir`` is the ImageFolder root)."""
    if dataset == "cifar10":
        return load_cifar10(split, data_dir, limit=limit)
    if dataset == "cinic10":
        root = Path(data_dir) if data_dir is not None else paths.data_dir()
        root = root / "cinic10" if (root / "cinic10").is_dir() else root
        return load_image_folder(root, split, limit)[:2]
    if dataset == "imagefolder":
        if data_dir is None:
            raise TGDError("dataset 'imagefolder' needs data_dir: the folder holding "
                           "train/, valid/ and test/")
        return load_image_folder(data_dir, split, limit)[:2]
    raise TGDError(f"unknown dataset {dataset!r}; choose from {DATASETS}")
