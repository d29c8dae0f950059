"""Shared fixtures: real CIFAR-10 images from the shared data directory (skipped without it)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def cifar_test_images() -> np.ndarray:
    """The 1,000 lossless CIFAR-10 test images (uint8 N×32×32×3)."""
    from tgd_core.core.errors import TGDError
    from tgd_core.data.datasets import load_cifar10

    try:
        images, _ = load_cifar10("test_lossless_1k")
    except TGDError as exc:
        pytest.skip(f"CIFAR-10 not available: {exc}")
    return images


@pytest.fixture(scope="session")
def cifar_train_images() -> np.ndarray:
    """The first 10,000 CIFAR-10 training images (uint8 N×32×32×3)."""
    from tgd_core.data.datasets import _read_batch, cifar10_dir

    path = cifar10_dir() / "data_batch_1"
    if not path.exists():
        pytest.skip(f"CIFAR-10 not available at {path}")
    return np.ascontiguousarray(_read_batch(path)[0])


@pytest.fixture
def c_kernel():
    """Skips a test of the C paper-mode kernel on a machine with no C compiler (.ci/run installs
    one, so CI always runs them)."""
    from tgd_core.topology import _ckernel

    if _ckernel._load_library() is None:
        pytest.skip("no C compiler: the paper-mode C kernel cannot be built here")
