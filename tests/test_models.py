"""Wide-ResNet: parameter counts, shapes, names, init and block wiring (TGD_METHOD.md §3)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from official_reference import official

from tgd_core.core.errors import TGDError
from tgd_core.nets.models import MODELS, PreActBlock, WideResNet, build_model, count_parameters


@pytest.mark.parametrize("name, in_channels, expected", [
    ("wrn16_1", 3, 175_066),
    ("wrn16_3", 3, 1_549_530),
    ("wrn16_3", 6, 1_549_962),
])
def test_parameter_counts(name: str, in_channels: int, expected: int) -> None:
    assert count_parameters(build_model(name, in_channels=in_channels)) == expected


def test_registry_matches_names() -> None:
    assert set(MODELS) >= {"wrn16_1", "wrn16_2", "wrn16_3", "wrn16_4", "wrn28_1", "wrn28_2",
                           "wrn40_1", "wrn40_2"}
    for name, spec in MODELS.items():
        assert name == f"wrn{spec.depth}_{spec.width}"
        net = build_model(name, num_classes=7)
        assert (net.depth, net.width, net.fc.out_features) == (spec.depth, spec.width, 7)
        assert len(net.block1.nblockLayer) == (spec.depth - 4) // 6


def test_raw_student_shapes() -> None:
    net = build_model("wrn16_1").eval()
    logits, feats = net(torch.randn(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 10)
    assert [tuple(f.shape) for f in feats] == [(2, 16, 32, 32), (2, 32, 16, 16), (2, 64, 8, 8)]
    assert torch.equal(net(torch.zeros(1, 3, 32, 32)), net(torch.zeros(1, 3, 32, 32)))


def test_pi_teacher_shapes_on_6x50x50() -> None:
    net = build_model("wrn16_3", in_channels=6).eval()
    logits, feats = net(torch.randn(2, 6, 50, 50), return_features=True)
    assert logits.shape == (2, 10)
    assert [tuple(f.shape) for f in feats] == [(2, 48, 50, 50), (2, 96, 25, 25),
                                               (2, 192, 13, 13)]


def test_features_are_group_outputs_before_final_bn() -> None:
    torch.manual_seed(0)
    net = build_model("wrn16_2").eval()
    x = torch.randn(3, 3, 32, 32)
    logits, (f1, f2, f3) = net(x, return_features=True)
    assert torch.allclose(f1, net.block1(net.conv1(x)))
    assert torch.allclose(f2, net.block2(f1))
    pooled = F.relu(net.batch_norm(f3)).mean(dim=(2, 3))
    assert torch.allclose(logits, net.fc(pooled), atol=1e-5)
    assert f3.min() < 0  # not yet passed through the final ReLU


def test_state_dict_names_are_the_authors() -> None:
    keys = set(build_model("wrn16_1").state_dict())
    assert {"conv1.weight", "block1.nblockLayer.0.batch_norm1.running_mean",
            "block1.nblockLayer.1.conv2.weight", "block2.nblockLayer.0.conv_inp.weight",
            "block3.nblockLayer.0.conv_inp.weight", "batch_norm.weight", "fc.bias"} <= keys
    # k = 1: the first group keeps width 16 and stride 1, so no projection shortcut
    assert "block1.nblockLayer.0.conv_inp.weight" not in keys
    assert "block1.nblockLayer.0.conv_inp.weight" in build_model("wrn16_3").state_dict()
    assert "block2.nblockLayer.1.conv_inp.weight" not in keys


@pytest.mark.parametrize("name", ["wrn161_Student.pth.tar", "T163_S161_kd.pth.tar",
                                  "T163_S161_TGD.pth.tar"])
def test_authors_state_dict_loads_strictly_in_order(name: str) -> None:
    raw = torch.load(official(name), map_location="cpu", weights_only=True)
    net = build_model("wrn16_1")
    net.load_state_dict(raw["model_state_dict"], strict=True)
    assert list(net.state_dict()) == list(raw["model_state_dict"])
    # parameters registered in the authors' order: their SGD momentum buffers line up
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    opt.load_state_dict(raw["optimizer_state_dict"])
    for p in net.parameters():
        assert opt.state[p]["momentum_buffer"].shape == p.shape


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    net = build_model("wrn16_4")
    w = net.block3.nblockLayer[1].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (9 * 256)), rel=0.02)
    assert abs(w.mean().item()) < 1e-3
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert torch.all(net.fc.bias == 0)


def test_block_is_preactivation_with_activated_projection() -> None:
    torch.manual_seed(1)
    block = PreActBlock(4, 8, stride=2, projection=True)
    for bn in (block.batch_norm1, block.batch_norm2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.normal_()
        bn.bias.data.normal_()
    block.eval()
    x = torch.randn(2, 4, 9, 9)
    act = F.relu(block.batch_norm1(x))
    expected = block.conv2(F.relu(block.batch_norm2(block.conv1(act)))) + block.conv_inp(act)
    assert torch.allclose(block(x), expected, atol=1e-6)
    identity = PreActBlock(8, 8, stride=1, projection=False).eval()
    y = torch.randn(2, 8, 5, 5)
    inner = identity.conv2(F.relu(identity.batch_norm2(identity.conv1(
        F.relu(identity.batch_norm1(y))))))
    assert torch.allclose(identity(y), inner + y, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"depth": 15, "width": 1}, {"depth": 4, "width": 1},
                                    {"depth": 16, "width": 0}, {"depth": 16, "width": 1,
                                                                "in_channels": 0}])
def test_bad_architecture_raises(kwargs) -> None:
    with pytest.raises(TGDError):
        WideResNet(**kwargs)


def test_unknown_model_name() -> None:
    with pytest.raises(TGDError, match="unknown model 'wrn99_9'"):
        build_model("wrn99_9")
