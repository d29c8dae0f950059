"""Where the TGD authors' released checkpoints and CIFAR-10 live for tests, and what they score.

Accuracies on the full CIFAR-10 ``test_batch`` from ``shared/reference/tgd_official/SOURCE.md``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tgd_core.core import paths

OFFICIAL_DIR = paths.PROJECT_ROOT.parent / "shared" / "reference" / "tgd_official"
OFFICIAL_ACCURACY = {  # file -> (epoch, test_batch accuracy in percent)
    "wrn161_Student.pth.tar": (42, 75.23),
    "T163_S161_kd.pth.tar": (40, 76.54),
    "T163_S161_TGD.pth.tar": (40, 76.67),
}
TGD_CHECKPOINT = OFFICIAL_DIR / "T163_S161_TGD.pth.tar"


def official(name: str) -> Path:
    """Path of an authors' checkpoint; skips the test when /work/shared is absent."""
    path = OFFICIAL_DIR / name
    if not path.is_file():
        pytest.skip(f"authors' checkpoint not available at {path} (needs ../shared)")
    return path


def cifar10_split(split: str):
    """(images, labels) of a CIFAR-10 split from paths.data_dir(); skips when absent."""
    from tgd_core.core.errors import TGDError
    from tgd_core.data.datasets import load_cifar10

    try:
        return load_cifar10(split, data_dir=paths.data_dir())
    except TGDError as exc:
        pytest.skip(f"CIFAR-10 not available in {paths.data_dir()}: {exc}")
