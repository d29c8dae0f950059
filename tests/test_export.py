"""tgd export: ONNX and TorchScript models that match PyTorch eager, their sidecar, the CLI,
a PI network, and clear errors."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest
import torch

from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.data.datasets import CIFAR10_CLASSES
from tgd_core.data.normalization import CIFAR10_RAW
from tgd_core.evaluation.metrics import model_input_transform, predict_logits
from tgd_core.nets.checkpoints import load_checkpoint, save_checkpoint
from tgd_core.nets.export import (
    DEFAULT_ATOL,
    FORMATS,
    ExportedClassifier,
    export_checkpoint,
    sidecar_path,
)
from tgd_core.nets.models import build_model

STUDENT = PROJECT_ROOT / "checkpoints" / "student_tgd.pt"
PI_TEACHER = PROJECT_ROOT / "checkpoints" / "t2_wrn16_1_pi.pt"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A freshly initialised 3-class WRN16-1 (no dataset in its config: no class names)."""
    torch.manual_seed(0)
    net = build_model("wrn16_1", num_classes=3)
    for m in net.modules():  # non-trivial BN statistics, so the normalisation matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt", net, input_kind="raw",
                           normalization=CIFAR10_RAW, git_commit="")


def eager_logits(path, images) -> torch.Tensor:
    ckpt = load_checkpoint(path)
    return predict_logits(ckpt.build(), images, ckpt.normalization,
                          transform=model_input_transform(ckpt.input_kind, ckpt.config))


def test_cli_choices_mirror_the_engine():
    from tgd_core.commands import export as command

    assert command.FORMATS == FORMATS
    assert command.DEFAULT_ATOL == DEFAULT_ATOL


@pytest.mark.parametrize("fmt", FORMATS)
def test_tiny_model_exports_and_runs(tiny_checkpoint, tmp_path, fmt):
    out = tmp_path / f"tiny.{fmt}"
    result = export_checkpoint(tiny_checkpoint, out, fmt, data_dir=tmp_path / "no-data")
    v = result.validation
    assert v.passed and v.max_abs_diff <= 1e-4 and v.n == 64 and v.argmax_agreement == 64
    assert v.images.startswith("64 random images")  # no data: seeded random images, said so
    assert f"{fmt}, " in result.summary() and "argmax agrees 64/64" in result.summary()

    meta = json.loads(sidecar_path(out).read_text())
    assert meta["format"] == fmt and meta["file"] == out.name
    assert meta["input"]["kind"] == "raw" and meta["input"]["shape"] == [None, 3, 32, 32]
    assert meta["input"]["range"] == [0.0, 1.0] and "pi_representation" not in meta["input"]
    assert meta["output"]["shape"] == [None, 3] and meta["classes"] is None
    assert meta["normalization"]["mean"] == list(CIFAR10_RAW.mean)
    assert meta["source_checkpoint"]["sha256"] == hashlib.sha256(
        tiny_checkpoint.read_bytes()).hexdigest()
    assert meta["versions"]["torch"] == torch.__version__
    assert meta["validation"] == {**v.to_dict(), "passed": True}

    # the runtime class: uint8 or float images, a batch of any size or one image
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    want = eager_logits(tiny_checkpoint, images).numpy()
    model = ExportedClassifier(out)
    np.testing.assert_allclose(model.predict(images), want, atol=1e-4)
    np.testing.assert_allclose(model.predict(images / 255.0), want, atol=1e-4)
    np.testing.assert_allclose(model.predict(images[0]), want[:1], atol=1e-4)


@pytest.mark.usefixtures("cifar_test_images")
@pytest.mark.parametrize("fmt", FORMATS)
def test_shipped_student_matches_pytorch_on_cifar(tmp_path, fmt):
    result = export_checkpoint(STUDENT, tmp_path / f"student.{fmt}", fmt)
    assert result.validation.images == "64 CIFAR-10 test images"
    assert result.validation.max_abs_diff <= 1e-4 and result.validation.argmax_agreement == 64
    meta = json.loads(result.sidecar.read_text())
    assert meta["classes"] == list(CIFAR10_CLASSES)
    assert meta["source_checkpoint"]["model"] == "wrn16_1"


def test_pi_network_exports_with_its_representation(tmp_path):
    out = tmp_path / "t2.onnx"
    result = export_checkpoint(PI_TEACHER, out, "onnx")
    assert result.validation.max_abs_diff <= 1e-4
    meta = json.loads(result.sidecar.read_text())
    assert meta["input"]["kind"] == "pi" and meta["input"]["shape"] == [None, 6, 50, 50]
    assert meta["input"]["pi_representation"]["mode"] == "paper"
    assert meta["normalization"]["mean"] == list(load_checkpoint(PI_TEACHER).normalization.mean)
    # predict() takes images and computes their PIs as the checkpoint was trained on
    images = np.random.default_rng(2).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    model = ExportedClassifier(out)
    assert model.model_input(images).shape == (4, 6, 50, 50)
    np.testing.assert_allclose(model.predict(images), eager_logits(PI_TEACHER, images).numpy(),
                               atol=1e-4)


def test_cli_end_to_end(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "models" / "tiny.pt"
    assert main(["export", "--checkpoint", str(tiny_checkpoint), "--format", "torchscript",
                 "--out", str(out), "--data-dir", str(tmp_path)]) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "torchscript" in line and "KiB" in line
    assert "max |Δ logit| 0.00e+00" in line and "argmax agrees 64/64" in line
    assert out.is_file() and sidecar_path(out).is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["tiny.pt", "tiny.pt.json"]


def test_cli_errors(tiny_checkpoint, tmp_path, capsys):
    def error(*args: str) -> str:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("tgd: error: export: ") and "\n" not in err
        return err

    out = str(tmp_path / "m.onnx")
    assert "no such checkpoint file" in error("--checkpoint", str(tmp_path / "nope.pt"),
                                              "--out", out)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    assert "not a PyTorch checkpoint" in error("--checkpoint", str(bad), "--out", out)
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert "cannot write there" in error("--checkpoint", str(tiny_checkpoint),
                                         "--out", str(blocker / "m.onnx"))
    assert "is a folder" in error("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path))
    with pytest.raises(SystemExit) as exc:
        main(["export", "--checkpoint", str(tiny_checkpoint), "--out", out, "--format", "tflite"])
    assert exc.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert not list(tmp_path.glob("m.onnx*"))


def test_over_tolerance_writes_nothing(tiny_checkpoint, tmp_path):
    with pytest.raises(TGDError, match=r"not written: .* > tolerance 1e-12"):
        export_checkpoint(tiny_checkpoint, tmp_path / "m.onnx", "onnx", atol=1e-12,
                          data_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no model, no sidecar, no temporary file


def test_missing_onnxruntime_says_what_to_install(tiny_checkpoint, tmp_path, monkeypatch):
    export_checkpoint(tiny_checkpoint, tmp_path / "m.onnx", "onnx", data_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(TGDError, match=r'pip install "tgd\[export\]"'):
        export_checkpoint(tiny_checkpoint, tmp_path / "n.onnx", "onnx")
    with pytest.raises(TGDError, match="onnxruntime"):
        ExportedClassifier(tmp_path / "m.onnx")


def test_exported_model_needs_its_sidecar(tiny_checkpoint, tmp_path):
    out = export_checkpoint(tiny_checkpoint, tmp_path / "m.pt", "torchscript",
                            data_dir=tmp_path).path
    sidecar_path(out).unlink()
    with pytest.raises(TGDError, match="missing sidecar"):
        ExportedClassifier(out)
