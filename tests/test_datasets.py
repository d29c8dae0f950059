"""Datasets in the ImageFolder layout (CINIC-10 and others) and CIFAR-10 partial loading."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tgd_core.core.errors import TGDError
from tgd_core.data.datasets import load_cifar10, load_dataset, load_image_folder


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
    with pytest.raises(TGDError, match="test_split"):
        TrainConfig.build(dataset="imagefolder", test_split="test_lossless_1k")
