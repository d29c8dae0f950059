"""Datasets in the ImageFolder layout (CINIC-10 and others) and CIFAR-10 partial loading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tgd_core.core.errors import TGDError
from tgd_core.data.datasets import (
    dataset_classes,
    load_cifar10,
    load_dataset,
    load_image_folder,
)
from tgd_core.nets.checkpoints import load_checkpoint


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 4)):
        for c in ("cat", "dog"):
            d = tmp_path / split / c
            d.mkdir(parents=True)
            for i in range(n // 2):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    d / f"{i}.png")
    return tmp_path


def test_image_folder_layout(folder):
    x, y, classes = load_image_folder(folder, "train")
    assert x.shape == (6, 32, 32, 3) and x.dtype == np.uint8
    assert classes == ["cat", "dog"] and y.tolist() == [0, 0, 0, 1, 1, 1]
    x, y = load_dataset("imagefolder", "test", folder, limit=3)
    assert len(x) == 3 and y.tolist() == [0, 0, 1]
    (folder / "cinic10").mkdir()
    with pytest.raises(TGDError, match="missing"):
        load_dataset("cinic10", "valid", folder)


def test_image_folder_errors(folder, tmp_path):
    with pytest.raises(TGDError, match="needs data_dir"):
        load_dataset("imagefolder", "train")
    (folder / "test" / "bird").mkdir()
    with pytest.raises(TGDError, match="not in"):
        load_image_folder(folder, "test")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "train" / "cat" / "odd.png")
    with pytest.raises(TGDError, match="different sizes"):
        load_image_folder(folder, "train")
    with pytest.raises(TGDError, match="unknown dataset"):
        load_dataset("mnist", "train")


@pytest.mark.usefixtures("cifar_test_images")
def test_cifar_limit_reads_the_first_images():
    x, y = load_cifar10("train", limit=12)
    full, labels = load_cifar10("test_lossless_1k")
    assert x.shape == (12, 32, 32, 3) and len(y) == 12
    assert np.array_equal(load_cifar10("test_lossless_1k", limit=5)[0], full[:5])


@pytest.mark.usefixtures("cifar_test_images")
def test_training_on_an_image_folder(folder, tmp_path):
    from tgd_core.training import TrainConfig, run_training

    cfg = TrainConfig.build(dataset="imagefolder", data_dir=str(folder), epochs=1,
                            batch_size=4, out_dir=str(tmp_path / "run"))
    result = run_training(cfg, progress=False)
    assert result["last"]["epoch"] == 1 and 0 <= result["last"]["test_accuracy"] <= 100
    # its first 3 training images are all cats: the student still predicts both classes
    subset = cfg.model_copy(update={"train_subset": 3, "out_dir": str(tmp_path / "cats")})
    run_training(subset, progress=False)
    assert load_checkpoint(tmp_path / "cats" / "latest.pt").num_classes == 2
    assert dataset_classes("imagefolder", folder) == 2 and dataset_classes("cifar10") == 10
    with pytest.raises(TGDError, match="test_split"):
        TrainConfig.build(dataset="imagefolder", test_split="test_lossless_1k")


def _write_batch(folder, name: str, batch, protocol: int = 2) -> None:
    import pickle

    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))


class _RunsCode:
    """What a crafted batch file could carry: a callable run by a plain ``pickle.load``."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_cifar_batch_loads_under_every_pickle_protocol(tmp_path, protocol):
    """numpy pickles arrays through other globals per protocol (5: _frombuffer); the batch
    reader allows those, and only those."""
    data = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072)
    _write_batch(tmp_path / "cifar10", "test_batch", {"data": data, "labels": [3, 9],
                                                     "batch_label": b"x", "filenames": [b"a"]},
                 protocol)
    images, labels = load_cifar10("test", tmp_path)
    assert images.shape == (2, 32, 32, 3) and labels.tolist() == [3, 9]
    assert (images[1, 0, 0] == data[1, [0, 1024, 2048]]).all()


@pytest.mark.parametrize("batch, message", [
    ({"data": _RunsCode("MARKER"), "labels": [0]}, "refused to load io.open"),
    ({"data": np.zeros((0, 3072), np.uint8), "labels": []}, "malformed batch: data (0, 3072)"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0, -1]},
     "malformed batch: labels in [-1, 0], not 0–9"),
    ({"data": np.zeros((1, 3072), np.uint8), "labels": [10]}, "labels in [10, 10]"),
    ({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}, "labels (1,)"),
])
def test_a_bad_cifar_batch_is_one_error_and_runs_nothing(tmp_path, batch, message):
    marker = tmp_path / "ran"
    if isinstance(batch["data"], _RunsCode):
        batch["data"].marker = marker
    _write_batch(tmp_path / "cifar10", "test_batch", batch)
    with pytest.raises(TGDError, match="test_batch: ") as caught:
        load_cifar10("test", tmp_path)
    assert message in str(caught.value) and not marker.exists()
