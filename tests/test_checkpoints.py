"""Checkpoints: our format round-trips atomically; the authors' files load; bad files fail in
one line (issue #3 acceptance)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from official_reference import OFFICIAL_ACCURACY, official

from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW, Normalization
from tgd_core.nets.checkpoints import (
    FORMAT,
    VERSION,
    NonFiniteError,
    infer_architecture,
    load_checkpoint,
    non_finite_tensors,
    save_checkpoint,
)
from tgd_core.nets.models import build_model


def _trained_like(name: str = "wrn16_1", in_channels: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    net = build_model(name, in_channels=in_channels)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net.train()
    loss = net(torch.randn(4, in_channels, 32, 32)).logsumexp(1).mean()
    loss.backward()
    opt.step()
    return net, opt


def test_round_trip_keeps_everything(tmp_path: Path) -> None:
    net, opt = _trained_like()
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[40, 80], gamma=0.2)
    path = save_checkpoint(tmp_path / "run" / "best.pt", net, input_kind="raw",
                           normalization=CIFAR10_RAW, optimizer=opt, scheduler=sched, epoch=3,
                           metrics={"accuracy": 51.5, "history": [1.0, 0.5]},
                           config={"lr": 0.1, "milestones": [40, 80]}, git_commit="abc123")
    raw = torch.load(path, weights_only=True)  # plain, safely loadable dict
    assert raw["format"] == FORMAT and raw["version"] == VERSION
    assert set(raw["versions"]) == {"torch", "python", "tgd"}

    ck = load_checkpoint(path)
    assert (ck.model, ck.in_channels, ck.num_classes, ck.input_kind, ck.source) == (
        "wrn16_1", 3, 10, "raw", "tgd")
    assert ck.normalization == CIFAR10_RAW
    assert ck.epoch == 3 and ck.metrics["history"] == [1.0, 0.5] and ck.config["lr"] == 0.1
    assert ck.git_commit == "abc123" and ck.versions["torch"] == torch.__version__
    assert ck.scheduler["milestones"] == {40: 1, 80: 1}
    rebuilt = ck.build()
    assert not rebuilt.training
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    assert torch.equal(rebuilt(x), net(x))
    opt2 = torch.optim.SGD(rebuilt.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(ck.optimizer)
    for p, q in zip(net.parameters(), rebuilt.parameters(), strict=True):
        assert torch.equal(opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"])


def test_git_commit_recorded_by_default(tmp_path: Path) -> None:
    net = build_model("wrn16_1")
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.pt", net, input_kind="raw",
                                         normalization=CIFAR10_RAW))
    assert ck.git_commit is None or len(ck.git_commit.split("-")[0]) == 40


def test_pi_checkpoint(tmp_path: Path) -> None:
    net = build_model("wrn16_3", in_channels=6)
    ck = load_checkpoint(save_checkpoint(tmp_path / "t2.pt", net, input_kind="pi",
                                         normalization=CIFAR10_PI))
    assert (ck.model, ck.in_channels, ck.input_kind) == ("wrn16_3", 6, "pi")
    assert ck.normalization.channels == 6


def test_loading_never_moves_the_global_random_state(tmp_path: Path) -> None:
    """A run seeds torch, then loads its teachers: their shape check must not draw random
    numbers, or the student's init would depend on what the process loaded before."""
    from tgd_core.nets.checkpoints import _expected_shapes

    path = save_checkpoint(tmp_path / "w.pt", build_model("wrn16_2"), input_kind="raw",
                           normalization=CIFAR10_RAW)
    _expected_shapes.cache_clear()  # the first load of an architecture builds the model
    for _ in range(2):
        torch.manual_seed(7)
        before = torch.random.get_rng_state()
        load_checkpoint(path)
        assert torch.equal(torch.random.get_rng_state(), before)


def test_atomic_overwrite_and_failed_save_keeps_old_file(tmp_path: Path) -> None:
    net = build_model("wrn16_1")
    path = save_checkpoint(tmp_path / "latest.pt", net, input_kind="raw",
                           normalization=CIFAR10_RAW, epoch=1)
    save_checkpoint(path, net, input_kind="raw", normalization=CIFAR10_RAW, epoch=2)
    assert load_checkpoint(path).epoch == 2
    with pytest.raises(TGDError, match="not saved.*class object"):
        save_checkpoint(path, net, input_kind="raw", normalization=CIFAR10_RAW, epoch=3,
                        metrics={"when": object()})
    assert load_checkpoint(path).epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]  # no temp files left


def test_save_rejects_inconsistent_metadata(tmp_path: Path) -> None:
    net = build_model("wrn16_1")
    with pytest.raises(TGDError, match="input_kind"):
        save_checkpoint(tmp_path / "x.pt", net, input_kind="rgb", normalization=CIFAR10_RAW)
    with pytest.raises(TGDError, match="6 channels"):
        save_checkpoint(tmp_path / "x.pt", net, input_kind="raw", normalization=CIFAR10_PI)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("name", sorted(OFFICIAL_ACCURACY))
def test_authors_checkpoints_are_recognised(name: str) -> None:
    ck = load_checkpoint(official(name))
    assert (ck.model, ck.in_channels, ck.num_classes, ck.input_kind, ck.source) == (
        "wrn16_1", 3, 10, "raw", "official")
    assert ck.epoch == OFFICIAL_ACCURACY[name][0]
    assert ck.normalization == Normalization((0.507, 0.487, 0.441), (0.267, 0.256, 0.276))
    assert ck.optimizer["param_groups"][0]["momentum"] == 0.9
    ck.build()  # strict load


@pytest.mark.parametrize("name, in_channels, classes", [("wrn16_3", 6, 10), ("wrn28_2", 3, 100),
                                                        ("wrn40_1", 3, 10)])
def test_authors_layout_architecture_is_inferred(tmp_path: Path, name: str, in_channels: int,
                                                 classes: int) -> None:
    net = build_model(name, in_channels=in_channels, num_classes=classes)
    assert infer_architecture(net.state_dict()) == (name, in_channels, classes)
    path = tmp_path / "authors.pth.tar"
    torch.save({"model_state_dict": net.state_dict(), "optimizer_state_dict": {}, "epoch": 7},
               path)
    ck = load_checkpoint(path)
    assert (ck.model, ck.in_channels, ck.epoch, ck.source) == (name, in_channels, 7, "official")
    assert ck.input_kind == ("pi" if in_channels == 6 else "raw")


class _Foreign:
    pass


def _ours(tmp_path: Path) -> Path:
    return save_checkpoint(tmp_path / "ours.pt", build_model("wrn16_1"), input_kind="raw",
                           normalization=CIFAR10_RAW)


def _rewrite(tmp_path: Path, **changes) -> Path:
    raw = torch.load(_ours(tmp_path), weights_only=True)
    raw.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del raw[key]
    torch.save(raw, tmp_path / "edited.pt")
    return tmp_path / "edited.pt"


BAD_FILES = {
    "empty": (lambda d: (d / "f.pt").write_bytes(b""), "empty file"),
    "text": (lambda d: (d / "f.pt").write_text("not a checkpoint\n"), "not a PyTorch checkpoint"),
    "truncated": (lambda d: (d / "f.pt").write_bytes(_ours(d).read_bytes()[:20_000]),
                  "damaged or truncated"),
    "tail-cut": (lambda d: (d / "f.pt").write_bytes(_ours(d).read_bytes()[:-100]),
                 "damaged or truncated"),
    "pickle": (lambda d: (d / "f.pt").write_bytes(pickle.dumps({"a": 1})), "safe loading"),
    "custom class": (lambda d: torch.save({"a": _Foreign()}, d / "f.pt"), "_Foreign"),
    "list": (lambda d: torch.save([1, 2], d / "f.pt"), "not a checkpoint dict"),
    "foreign keys": (lambda d: torch.save({"weights": torch.zeros(2)}, d / "f.pt"),
                     "unrecognised checkpoint"),
    "missing field": (lambda d: _rewrite(d, input_kind=None).rename(d / "f.pt"), "input_kind"),
    "future version": (lambda d: _rewrite(d, version=99).rename(d / "f.pt"), "version 99"),
    "unknown model": (lambda d: _rewrite(d, model="resnet50").rename(d / "f.pt"), "resnet50"),
    "wrong shapes": (lambda d: _rewrite(d, model="wrn16_2").rename(d / "f.pt"),
                     "does not fit wrn16_2|shape"),
    "authors, not a WRN": (lambda d: torch.save({"model_state_dict": {"w": torch.zeros(1)}},
                                                d / "f.pt"), "not a Wide-ResNet"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_files_raise_one_line_tgd_error(tmp_path: Path, case: str) -> None:
    make, message = BAD_FILES[case]
    make(tmp_path)
    with pytest.raises(TGDError, match=message) as info:
        load_checkpoint(tmp_path / "f.pt")
    text = str(info.value)
    assert "\n" not in text and str(tmp_path / "f.pt") in text


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TGDError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(TGDError, match="not a file"):
        load_checkpoint(tmp_path)


def test_save_refuses_non_finite_tensors_and_keeps_the_old_file(tmp_path: Path) -> None:
    """#16 problem 4: no caller can write a NaN/inf checkpoint (weights, BatchNorm buffers or
    optimizer state); the file on disk stays the last finite one."""
    net, opt = _trained_like()
    path = save_checkpoint(tmp_path / "latest.pt", net, input_kind="raw",
                           normalization=CIFAR10_RAW, optimizer=opt, epoch=1)
    bn = net.block1.nblockLayer[0].batch_norm1
    bn.running_var[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"not saved: 1 of \d+ tensors .*batch_norm1.runn"):
        save_checkpoint(path, net, input_kind="raw", normalization=CIFAR10_RAW, epoch=2)
    bn.running_var[0] = 1.0
    next(iter(opt.state.values()))["momentum_buffer"].view(-1)[0] = float("nan")
    with pytest.raises(NonFiniteError, match="optimizer.state.0.momentum_buffer"):
        save_checkpoint(path, net, input_kind="raw", normalization=CIFAR10_RAW,
                        optimizer=opt, epoch=2)
    assert load_checkpoint(path).epoch == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.pt"]


@pytest.mark.parametrize("device", [  # CPU: stacked aminmax; accelerators: _foreach_norm
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA device"))])
def test_non_finite_tensors_finds_nan_and_inf_but_not_large_values(device: str) -> None:
    tensors = {"big": torch.full((3,), 3e38), "nan": torch.tensor([0.0, float("nan")]),
               "inf": torch.tensor([-float("inf")], dtype=torch.float64),
               "half": torch.tensor([float("nan")], dtype=torch.bfloat16),
               "long": torch.randn(100_003).index_fill_(0, torch.tensor([77_777]), float("inf")),
               "count": torch.tensor(7), "empty": torch.zeros(0)}
    found = non_finite_tensors((k, v.to(device)) for k, v in tensors.items())
    assert found == (["nan", "inf", "half", "long"], 5)


def test_loading_non_finite_weights_is_a_one_line_error(tmp_path: Path) -> None:
    """#16 problem 5: a NaN checkpoint (written by an older version) is refused on load."""
    raw = torch.load(_ours(tmp_path), weights_only=True)
    raw["state_dict"]["fc.weight"][0, 0] = float("nan")
    raw["state_dict"]["block1.nblockLayer.0.batch_norm1.running_var"][1] = float("inf")
    torch.save(raw, tmp_path / "nan.pt")
    with pytest.raises(NonFiniteError, match=r"nan.pt: unusable weights: 2 of \d+ tensors") as e:
        load_checkpoint(tmp_path / "nan.pt")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("head", [b"", b"PK\x03\x04", b"\x80", b"\x80\x02X\x06\x00\x00\x00"])
def test_errors_never_quote_the_files_content(tmp_path: Path, head: bytes) -> None:
    """Opening /etc/passwd (or any foreign file) as a checkpoint must not leak its bytes."""
    secret = b"root:x:0:0:SECRET-TOKEN-8e1f:/root:/bin/bash\n"
    (tmp_path / "passwd").write_bytes(head + secret * 50)
    with pytest.raises(TGDError, match="passwd") as info:
        load_checkpoint(tmp_path / "passwd")
    text = str(info.value).replace(str(tmp_path / "passwd"), "FILE")
    assert text.startswith("FILE: ") and "\n" not in text
    assert "SECRET" not in text and "root" not in text and "bash" not in text
    if not head:
        assert "not a PyTorch checkpoint (neither a zip archive nor a pickle)" in text
