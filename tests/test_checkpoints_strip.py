"""Shipping or archiving a checkpoint: weights and metadata without optimizer or training state;
the digest of the network it holds."""

from __future__ import annotations

import pytest
import torch

from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import CIFAR10_RAW
from tgd_core.nets.checkpoints import (
    load_checkpoint,
    save_checkpoint,
    strip_checkpoint,
    stripped_bytes,
    weights_sha256,
)
from tgd_core.nets.models import build_model


def trained_checkpoint(path):
    """A WRN16-1 after one SGD step with momentum, saved with its optimizer state."""
    model = build_model("wrn16_1")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    return save_checkpoint(path, model, input_kind="raw", normalization=CIFAR10_RAW,
                           optimizer=opt, epoch=3, training_state={"loop": {"epoch": 3}},
                           metrics={"test_accuracy": 50.0}, config={"seed": 1})


def test_strip_keeps_weights_and_metadata(tmp_path):
    full = trained_checkpoint(tmp_path / "full.pt")
    small = strip_checkpoint(full, tmp_path / "small.pt")
    a, b = load_checkpoint(full), load_checkpoint(small)
    assert small.stat().st_size < full.stat().st_size
    assert b.optimizer is None and b.training_state is None
    assert (b.epoch, b.metrics, b.config) == (3, {"test_accuracy": 50.0}, {"seed": 1})
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    assert (b.versions, b.git_commit) == (a.versions, a.git_commit)  # as it was trained
    assert stripped_bytes(full) == stripped_bytes(full) == small.read_bytes()  # deterministic


def test_the_weights_digest_names_the_network_not_the_file(tmp_path):
    full = trained_checkpoint(tmp_path / "full.pt")
    small = strip_checkpoint(full, tmp_path / "small.pt")
    assert weights_sha256(full) == weights_sha256(small) != weights_sha256(
        trained_checkpoint(tmp_path / "other.pt"))  # another random init
    payload = torch.load(small, weights_only=True)
    payload["normalization"]["std"] = [s * 2 for s in payload["normalization"]["std"]]
    torch.save(payload, tmp_path / "renormalised.pt")
    assert weights_sha256(tmp_path / "renormalised.pt") != weights_sha256(small)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    assert weights_sha256(tmp_path / "junk.pt") is None
    assert weights_sha256(tmp_path / "absent.pt") is None
    torch.save({"model_state_dict": {}}, tmp_path / "official.pt")
    with pytest.raises(TGDError, match="official.pt: not a 'tgd-checkpoint' file"):
        stripped_bytes(tmp_path / "official.pt")
