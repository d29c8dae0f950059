"""Malformed checkpoints and checkpoints that do not fit the run fail in one line naming the file:
fields of the wrong type, architecture numbers the tensors contradict, unusable normalisation,
a resume from a stripped or foreign ``latest.pt``, teachers and init students with another
number of classes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import CIFAR10_RAW
from tgd_core.nets import checkpoints
from tgd_core.nets.checkpoints import load_checkpoint, save_checkpoint
from tgd_core.nets.models import build_model

NAN, INF = float("nan"), float("inf")


def _good(tmp_path: Path, name: str = "good.pt", **kw) -> Path:
    return save_checkpoint(tmp_path / name, build_model(kw.pop("model", "wrn16_1"), **kw),
                           input_kind="raw", normalization=CIFAR10_RAW, git_commit="")


def _edited(tmp_path: Path, official: bool = False, **changes) -> Path:
    raw = torch.load(_good(tmp_path), weights_only=True)
    if official:
        raw = {"model_state_dict": raw["state_dict"]}
    torch.save({**raw, **changes}, tmp_path / "f.pt")
    return tmp_path / "f.pt"


def _one_line_error(path: Path, match: str) -> str:
    with pytest.raises(TGDError, match=match) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert "\n" not in text and str(path) in text
    return text


WRONG_TYPES = {  # field -> (value, what the message says)
    "metrics": ([1, 2], "field 'metrics' must be a mapping or None, not list"),
    "config": ("abc", "field 'config' must be a mapping or None, not str"),
    "versions": (5, "field 'versions' must be a mapping or None, not int"),
    "model": (["x"], "field 'model' must be a string, not list"),
    "epoch": ("abc", "field 'epoch' must be an integer or None, not str"),
    "version": (True, "field 'version' must be an integer, not bool"),
    "in_channels": (3.0, "field 'in_channels' must be an integer, not float"),
    "input_kind": (["raw"], "field 'input_kind' must be a string, not list"),
    "training_state": ("x", "field 'training_state' must be a mapping or None, not str"),
    "optimizer": ("x", "field 'optimizer' must be a mapping or None, not str"),
    "normalization": ("abc", "field 'normalization' must be a mapping, not str"),
    "git_commit": (7, "field 'git_commit' must be a string or None, not int"),
}


@pytest.mark.parametrize("field", sorted(WRONG_TYPES))
def test_fields_of_the_wrong_type_are_refused_naming_the_field(tmp_path: Path, field: str):
    value, message = WRONG_TYPES[field]
    text = _one_line_error(_edited(tmp_path, **{field: value}), message)
    assert "abc" not in text  # never quotes the file's content


@pytest.mark.parametrize("epoch", ["abc", [1], 2.5])
def test_authors_format_epoch_of_the_wrong_type(tmp_path: Path, epoch) -> None:
    _one_line_error(_edited(tmp_path, official=True, epoch=epoch), "field 'epoch' must be")


def test_training_state_parts_are_checked(tmp_path: Path) -> None:
    raw = torch.load(_good(tmp_path), weights_only=True)
    for state, message in [({"loop": "x", "method": {}}, "'training_state.loop' must be"),
                           ({"loop": {}, "method": "x"},
                            "'training_state.method' must be a mapping of tensors, not str"),
                           ({"loop": {"sums": [1]}, "method": {}},
                            "'training_state.loop.sums' must be a mapping"),
                           ({"loop": {"epoch": "1"}, "method": {}},
                            "'training_state.loop.epoch' must be an integer"),
                           ({"loop": {}, "method": {"w": 1}},
                            "'training_state.method' must be a mapping of tensors")]:
        torch.save({**raw, "training_state": state}, tmp_path / "f.pt")
        _one_line_error(tmp_path / "f.pt", message)


@pytest.mark.parametrize("norm", [
    {"mean": [NAN] * 3, "std": [1.0] * 3}, {"mean": [0.0] * 3, "std": [INF] * 3},
    {"mean": [-INF] * 3, "std": [1.0] * 3}, {"mean": [0.0] * 3, "std": [0.0] * 3},
    {"mean": "abc", "std": "abc"}, {"mean": [True] * 3, "std": [1.0] * 3}, {"mean": [0.0] * 3}])
def test_unusable_normalisation_is_refused_at_load(tmp_path: Path, norm) -> None:
    text = _one_line_error(_edited(tmp_path, normalization=norm), "normali[sz]ation")
    assert "abc" not in text


@pytest.mark.parametrize("num_classes", [4_000_000, 10**9, 11])
def test_architecture_numbers_are_checked_before_any_model_is_built(
        tmp_path: Path, monkeypatch, num_classes: int) -> None:
    path = _edited(tmp_path, num_classes=num_classes)
    checkpoints._expected_shapes.cache_clear()

    def refuse(*args, **kw):
        raise AssertionError(f"a model was built for {args}")

    monkeypatch.setattr(checkpoints, "build_model", refuse)  # no allocation, whatever it says
    _one_line_error(path, "num_classes")


@pytest.mark.parametrize("dtype, shown", [(torch.complex64, "complex64"), (torch.int32, "int32")])
def test_weights_that_are_not_real_floats_are_refused(tmp_path: Path, dtype, shown) -> None:
    """Loading would cast them silently (a complex weight loses its imaginary part)."""
    raw = torch.load(_good(tmp_path), weights_only=True)
    raw["state_dict"]["fc.weight"] = raw["state_dict"]["fc.weight"].to(dtype)
    torch.save(raw, tmp_path / "f.pt")
    _one_line_error(tmp_path / "f.pt", f"fc.weight holds {shown} values")


def test_in_channels_the_tensors_contradict(tmp_path: Path) -> None:
    path = _edited(tmp_path, in_channels=6, normalization={"mean": [0.0] * 6, "std": [1.0] * 6})
    _one_line_error(path, "in_channels 6 .*conv1.weight")


# -- a run's setup: resume, teachers, init student ------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cifar_test_images) -> Path:
    """A one-epoch run (its folder: config.json, latest.pt, ...)."""
    from tgd_core.training import run_training

    cfg = _tiny(tmp_path_factory.mktemp("base") / "run")
    run_training(cfg, progress=False)
    return Path(cfg.out_dir)


def _tiny(out: Path, **kw):
    from tgd_core.training import TrainConfig

    values = dict(student="wrn16_1", train_subset=64, test_subset=32, test_split="test",
                  epochs=1, batch_size=32, milestones=[1], threads=2, out_dir=str(out))
    return TrainConfig.build(**{**values, **kw})


def _setup(cfg, resume: bool) -> str:
    from tgd_core.training.trainer import Trainer

    with pytest.raises(TGDError) as info:
        Trainer(cfg, progress=False).setup(resume)
    text = str(info.value)
    assert "\n" not in text
    return text


def _resume_with(tmp_path: Path, finished_run: Path, edit) -> str:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    raw = torch.load(run / "latest.pt", weights_only=True)
    edit(raw, run)
    if raw:
        torch.save(raw, run / "latest.pt")
    return _setup(_tiny(run), resume=True)


def test_resume_from_a_stripped_latest_pt(tmp_path: Path, finished_run: Path) -> None:
    text = _resume_with(tmp_path, finished_run, lambda raw, _: raw.update(optimizer=None))
    assert "latest.pt" in text and "no optimizer state" in text


def test_resume_with_a_bad_training_state(tmp_path: Path, finished_run: Path) -> None:
    text = _resume_with(tmp_path, finished_run, lambda raw, _: raw.update(training_state="x"))
    assert "latest.pt" in text and "'training_state' must be a mapping" in text


def test_resume_with_an_optimizer_of_another_shape(tmp_path: Path, finished_run: Path) -> None:
    def edit(raw, _):
        raw["optimizer"] = {"state": {}, "param_groups": [{"params": [0, 1], "lr": 0.1}]}

    text = _resume_with(tmp_path, finished_run, edit)
    assert "latest.pt" in text and "optimizer state does not fit" in text


def test_resume_with_method_state_of_another_shape(tmp_path: Path, finished_run: Path) -> None:
    def edit(raw, _):
        raw["training_state"]["method"] = {"regressor.weight": torch.zeros(2, 2)}

    text = _resume_with(tmp_path, finished_run, edit)
    assert "latest.pt" in text and "regressor.weight" in text


def test_resume_from_another_architecture(tmp_path: Path, finished_run: Path) -> None:
    def edit(raw, run):
        raw.clear()
        _good(run, "latest.pt", model="wrn16_2")

    text = _resume_with(tmp_path, finished_run, edit)
    assert "latest.pt" in text and "model wrn16_2, expected wrn16_1" in text
    assert "Error(s) in loading" not in text


def test_teacher_with_another_class_count(tmp_path: Path, cifar_test_images) -> None:
    teacher = _good(tmp_path, "three.pt", num_classes=3)
    cfg = _tiny(tmp_path / "run", method="kd", teachers={"t1": str(teacher)})
    text = _setup(cfg, resume=False)
    assert str(teacher) in text and "num_classes 3, expected 10" in text


def test_init_student_with_another_class_count(tmp_path: Path, cifar_test_images) -> None:
    init = _good(tmp_path, "three.pt", num_classes=3)
    cfg = _tiny(tmp_path / "run", method="kd", teachers={"t1": str(_good(tmp_path))},
                init_student=str(init))
    text = _setup(cfg, resume=False)
    assert str(init) in text and "num_classes 3, expected 10" in text


@pytest.mark.parametrize("text", ['{"student": ', "[1]"])
def test_resume_with_a_damaged_config_json(tmp_path: Path, finished_run: Path, text: str):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text(text)
    assert "config.json" in _setup(_tiny(run), resume=True)
