"""Shipping a checkpoint: weights and metadata without optimizer or training state."""

from __future__ import annotations

import torch

from tgd_core.data.normalization import CIFAR10_RAW
from tgd_core.nets.checkpoints import load_checkpoint, save_checkpoint, strip_checkpoint
from tgd_core.nets.models import build_model


def test_strip_keeps_weights_and_metadata(tmp_path):
    model = build_model("wrn16_1")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    full = save_checkpoint(tmp_path / "full.pt", model, input_kind="raw",
                           normalization=CIFAR10_RAW, optimizer=opt, epoch=3,
                           training_state={"loop": {"epoch": 3}}, metrics={"test_accuracy": 50.0},
                           config={"seed": 1})
    small = strip_checkpoint(full, tmp_path / "small.pt")
    a, b = load_checkpoint(full), load_checkpoint(small)
    assert small.stat().st_size < full.stat().st_size
    assert b.optimizer is None and b.training_state is None
    assert (b.epoch, b.metrics, b.config) == (3, {"test_accuracy": 50.0}, {"seed": 1})
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
