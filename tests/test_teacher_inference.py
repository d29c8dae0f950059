"""Teacher inference options (tgd_core.nets.teacher_inference, TrainConfig.teacher_inference):
BatchNorm folding is exact up to float rounding, int8 is a real approximation that keeps the
top-1, the config field validates, is saved, and defaults to the exact path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tgd_core.core.errors import TGDError
from tgd_core.nets.models import build_model
from tgd_core.nets.teacher_inference import (
    GraphTeacher,
    fold_conv_bn,
    folded_teacher,
    normalized_batches,
    prepare_teacher,
)
from tgd_core.training.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
T1 = ROOT / "checkpoints" / "t1_wrn16_3_raw.pt"
T2 = ROOT / "checkpoints" / "t2_wrn16_1_pi.pt"


def random_statistics(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` in eval mode with BatchNorm statistics and affine parameters far from the
    identity, so a wrong fold shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.4 * (torch.rand(n, generator=g) - 0.5))
    return model.eval()


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_fold_conv_bn_matches_conv_then_batchnorm_hand_computed():
    """One output channel, 1×1 conv of weight 2 on x = 3: conv 6; BN (μ 1, σ² 3, ε 1, γ 4,
    β 0.5) gives 4·(6 − 1)/2 + 0.5 = 10.5; the folded conv has weight 2·4/2 = 4, bias
    0.5 − 1·2 = −1.5."""
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1, eps=1.0).eval()
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(3.0)
        bn.weight.fill_(4.0)
        bn.bias.fill_(0.5)
    folded = fold_conv_bn(conv, bn)
    assert folded.weight.item() == 4.0 and folded.bias.item() == -1.5
    assert folded(torch.full((1, 1, 1, 1), 3.0)).item() == 10.5


@pytest.mark.parametrize(("name", "channels", "size", "folds"),
                         [("wrn16_3", 3, 32, 7), ("wrn16_1", 6, 50, 6)])
def test_folded_teacher_equals_the_unfolded_one(name, channels, size, folds):
    """Logits and features of the folded copy equal the eval-mode network's within 1e-5 of
    their scale (float32 rounding of a different summation order); WRN16-3's stem folds into
    its first block's BatchNorm (projection shortcut), WRN16-1's cannot (identity shortcut).
    The original is left unchanged."""
    torch.manual_seed(0)
    model = random_statistics(build_model(name, in_channels=channels))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = folded_teacher(model)
    assert count_batchnorms(model) - count_batchnorms(folded) == folds
    x = torch.randn(16, channels, size, size)
    with torch.no_grad():
        want_logits, want_features = model(x, return_features=True)
        got_logits, got_features = folded(x, return_features=True)
    for want, got in zip([want_logits, *want_features], [got_logits, *got_features],
                         strict=True):
        assert (got - want).abs().max() <= 1e-5 * want.abs().max()
    assert not torch.equal(got_logits, want_logits)  # a different computation, really run
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.fixture(scope="module")
def shipped_teacher():
    from tgd_core.nets.checkpoints import load_checkpoint
    from tgd_core.nets.network import Network

    if not T1.exists():
        pytest.skip(f"{T1} not shipped")
    return Network.from_checkpoint(load_checkpoint(T1))


def test_int8_teacher_keeps_top1_but_is_a_different_computation(shipped_teacher,
                                                                 cifar_train_images,
                                                                 cifar_test_images):
    """The shipped WRN16-3 teacher quantised to int8 (calibrated on 256 training images)
    agrees with the float teacher's top-1 on ≥ 90 % of 256 test images, returns the same
    feature shapes, and its logits differ (the int8 path is really taken)."""
    net = shipped_teacher
    int8 = prepare_teacher(net.model, "int8", normalized_batches(net, cifar_train_images[:256]))
    assert isinstance(int8, GraphTeacher)
    x = normalized_batches(net, cifar_test_images[:256])
    with torch.no_grad():
        want, want_features = net.model(torch.cat(x), return_features=True)
        got, got_features = int8(torch.cat(x), return_features=True)
        assert torch.equal(int8(x[0]), int8(x[0], return_features=True)[0])
    agree = (got.argmax(1) == want.argmax(1)).float().mean().item()
    assert agree >= 0.9, agree
    assert (got - want).abs().max() > 1e-3
    assert [f.shape for f in got_features] == [f.shape for f in want_features]


def test_prepare_teacher_exact_is_the_network_itself_and_bad_requests_are_errors():
    model = build_model("wrn16_1").eval()
    assert prepare_teacher(model, "exact") is model
    with pytest.raises(TGDError, match="unknown 'fp4'"):
        prepare_teacher(model, "fp4")
    with pytest.raises(TGDError, match="needs calibration images"):
        prepare_teacher(model, "int8")
    with pytest.raises(TGDError, match="needs a WideResNet"):
        prepare_teacher(nn.Conv2d(3, 3, 1), "folded")


def test_config_field_defaults_to_exact_validates_and_is_saved(tmp_path):
    assert TrainConfig().teacher_inference == "exact"
    with pytest.raises(TGDError, match="teacher_inference"):
        TrainConfig.build(teacher_inference="fp4")
    cfg = TrainConfig.build(teacher_inference="int8")
    cfg.save(tmp_path / "config.json")
    assert TrainConfig.load(tmp_path / "config.json").teacher_inference == "int8"
    assert "teacher_inference" in TrainConfig.fields_of_kind("learned")  # resumes must match


@pytest.mark.usefixtures("cifar_test_images")  # int8 calibrates on CIFAR-10 training images
@pytest.mark.parametrize("inference", ["exact", "folded", "int8"])
def test_trainer_loads_the_teachers_as_configured_and_tgd_runs_on_them(inference):
    """Trainer.load_teachers applies the option; TGD's teacher targets come out finite with
    the exact path's shapes, also in channels_last (as the trainer converts the distiller),
    and the distiller's state round-trips (the resume path)."""
    from tgd_core.distill import get_method
    from tgd_core.nets.models import WideResNet
    from tgd_core.nets.network import Network
    from tgd_core.training.trainer import Trainer

    if not (T1.exists() and T2.exists()):
        pytest.skip("shipped teachers missing")
    cfg = TrainConfig.build(method="tgd", teachers={"t1": str(T1), "t2": str(T2)},
                            teacher_inference=inference)
    trainer = Trainer(cfg)
    trainer.device = torch.device("cpu")
    teachers = trainer.load_teachers()
    kinds = {type(t.model) for t in teachers.values()}
    assert kinds == {GraphTeacher if inference == "int8" else WideResNet}
    if inference == "folded":
        assert all(isinstance(b.batch_norm2, nn.Identity)
                   for b in teachers["t1"].model.block1.nblockLayer)
    student = Network(build_model("wrn16_1"), "raw", teachers["t1"].normalization)
    distiller = get_method("tgd")(student, teachers).to(memory_format=torch.channels_last)
    inputs = {"raw": torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last),
              "pi": torch.rand(8, 6, 50, 50).contiguous(memory_format=torch.channels_last)}
    targets = distiller.teacher_targets(inputs)
    assert targets["t1_logits"].shape == (8, 10) and targets["sim1"].shape == (8, 8)
    assert all(torch.isfinite(v).all() for v in targets.values())
    distiller.load_state_dict(distiller.state_dict())
    assert torch.equal(distiller.teacher_targets(inputs)["t1_logits"], targets["t1_logits"])
