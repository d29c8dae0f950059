"""A tiny model zoo for tests: random WRN16-1 networks saved as T1, T2 (PI) and a student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW
from tgd_core.nets.checkpoints import save_checkpoint
from tgd_core.nets.models import build_model


def save_net(path: Path, seed: int, kind: str = "raw", **fields) -> Path:
    torch.manual_seed(seed)
    norm = CIFAR10_RAW if kind == "raw" else CIFAR10_PI
    net = build_model("wrn16_1", in_channels=norm.channels)
    return save_checkpoint(path, net, input_kind=kind, normalization=norm, git_commit="test",
                           **fields)


def make_zoo(folder: Path) -> Path:
    """``t1_raw.pt`` (role from its name), ``plain_pi.pt`` (a PI network: teacher2) and
    ``student_tgd.pt`` with a model card."""
    folder.mkdir(parents=True, exist_ok=True)
    save_net(folder / "t1_raw.pt", 1, metrics={"test_accuracy": 91.5, "test_ece": 0.03},
             config={"method": "scratch", "epochs": 200, "batch_size": 128, "lr": 0.1})
    save_net(folder / "plain_pi.pt", 2, "pi")
    save_net(folder / "student_tgd.pt", 3)
    (folder / "student_tgd.json").write_text(json.dumps({
        "role": "student", "method": "tgd", "recipe": "TGD, 200 epochs",
        "metrics": {"accuracy": 77.0, "ece": 0.05}, "description": "a test student"}))
    return folder


def use_zoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Point the zoo at a fresh tiny zoo and at no authors' files."""
    folder = make_zoo(tmp_path / "checkpoints")
    monkeypatch.setenv("TGD_CHECKPOINT_DIR", str(folder))
    monkeypatch.setenv("TGD_OFFICIAL_DIR", str(tmp_path / "no-official"))
    return folder
