"""The model zoo: discovery, cards, roles, the authors' students and cached loading."""

from __future__ import annotations

import json
import os

import pytest

from tests.zoo_helpers import make_zoo, save_net
from tgd_core.core.errors import TGDError
from tgd_core.nets import model_zoo


@pytest.fixture
def zoo_dir(tmp_path):
    return make_zoo(tmp_path / "ckpt")


def test_discover_reads_cards_checkpoints_and_roles(zoo_dir, tmp_path):
    entries = model_zoo.discover(zoo_dir, tmp_path / "none")
    assert [(e.name, e.role) for e in entries] == [
        ("t1_raw", "teacher1"), ("plain_pi", "teacher2"), ("student_tgd", "student")]
    t1, t2, student = entries
    assert (t1.method, t1.architecture, t1.input_kind) == ("scratch", "wrn16_1", "raw")
    assert (t1.accuracy, t1.ece) == (91.5, 0.03)
    assert t1.recipe.startswith("200 epochs; batch 128; lr 0.1")
    assert t2.input_kind == "pi" and t2.accuracy is None and t2.method is None
    card = student.card()
    assert (card["method"], card["accuracy"], card["ece"], card["recipe"]) == \
        ("tgd", 77.0, 0.05, "TGD, 200 epochs")
    assert model_zoo.missing_teachers(entries) == []
    assert [e.name for e in model_zoo.by_role(entries, "teacher2")] == ["plain_pi"]


def test_missing_folder_and_missing_teachers(tmp_path):
    assert model_zoo.discover(tmp_path / "nothing", tmp_path / "none") == []
    save_net(tmp_path / "c" / "s.pt", 0)
    entries = model_zoo.discover(tmp_path / "c", tmp_path / "none")
    assert [e.role for e in entries] == ["student"]
    missing = model_zoo.missing_teachers(entries)
    assert len(missing) == 2 and "teacher1" in missing[0] and "teacher2" in missing[1]


def test_bad_card_and_unknown_name_raise(zoo_dir, tmp_path):
    (zoo_dir / "plain_pi.json").write_text(json.dumps({"role": "headmaster"}))
    with pytest.raises(TGDError, match="role 'headmaster'"):
        model_zoo.discover(zoo_dir, tmp_path / "none")
    (zoo_dir / "plain_pi.json").write_text("{not json")
    with pytest.raises(TGDError, match="unreadable model card"):
        model_zoo.discover(zoo_dir, tmp_path / "none")
    with pytest.raises(TGDError, match="no model named 'x'"):
        model_zoo.find([], "x")


def test_load_network_is_cached_per_file_version(zoo_dir, tmp_path):
    entry = model_zoo.discover(zoo_dir, tmp_path / "none")[1]
    net = model_zoo.load_network(entry)
    assert net.input_kind == "pi" and net.model.in_channels == 6 and not net.model.training
    assert model_zoo.load_network(entry) is net
    save_net(entry.path, 9, "pi")
    os.utime(entry.path, ns=(1, 1))  # a new version of the file
    assert model_zoo.load_network(entry) is not net


def test_authors_students_when_present(tmp_path):
    folder = model_zoo.official_dir()
    if not (folder / "T163_S161_TGD.pth.tar").exists():
        pytest.skip(f"authors' checkpoints not in {folder}")
    entries = model_zoo.discover(tmp_path / "empty")
    assert {e.name: e.accuracy for e in entries} == {
        "scratch (authors)": 75.23, "kd (authors)": 76.54, "tgd (authors)": 76.67}
    assert all(e.role == "student" and e.source == "official" for e in entries)
    assert model_zoo.load_network(entries[2]).model.width == 1
