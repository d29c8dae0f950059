"""The model zoo: which trained networks are available, with their cards.

Sources, in order:

- ``checkpoints/*.pt`` (``TGD_CHECKPOINT_DIR`` overrides the folder), each with an optional
  JSON model card ``checkpoints/<name>.json``::

      {"role": "teacher1" | "teacher2" | "student", "method": "tgd", "architecture": "wrn16_1",
       "input_kind": "raw" | "pi", "recipe": "200 epochs, SGD 0.1 …",
       "metrics": {"accuracy": 76.7, "ece": 0.05}, "description": "…"}

  Fields missing from the card are read from the checkpoint (model, input kind, its ``metrics``
  and ``config``); without a role the name decides (``t1``/``teacher1`` → teacher1,
  ``t2``/``teacher2`` → teacher2), else a PI network is teacher2 and anything else a student.
- the TGD authors' three WRN16-1 students in ``../shared/reference/tgd_official``
  (``TGD_OFFICIAL_DIR`` overrides), with the test accuracies of its ``SOURCE.md``.

:func:`load_network` builds an entry's network once per file version (cached).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from tgd_core.core import paths
from tgd_core.core.errors import TGDError
from tgd_core.nets.checkpoints import Checkpoint, load_checkpoint

ROLES = ("teacher1", "teacher2", "student")
ROLE_LABELS = {"teacher1": "T1 (raw images)", "teacher2": "T2 (persistence images)",
               "student": "student"}
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".pth.tar")

# The authors' released students (github.com/jeunsom/TGD, models/*.pth.tar): accuracy on all of
# CIFAR-10 test_batch as recorded in shared/reference/tgd_official/SOURCE.md.
OFFICIAL_STUDENTS: dict[str, tuple[str, str, float, str]] = {
    "wrn161_Student.pth.tar": ("scratch", "scratch", 75.23,
                               "WRN16-1 trained from scratch (the TGD 'annealing' init)"),
    "T163_S161_kd.pth.tar": ("kd", "kd", 76.54, "WRN16-1 distilled from a WRN16-3 with KD"),
    "T163_S161_TGD.pth.tar": ("tgd", "tgd", 76.67,
                              "WRN16-1 distilled with TGD from WRN16-3 teachers"),
}


def checkpoint_dir() -> Path:
    env = os.environ.get("TGD_CHECKPOINT_DIR")
    return Path(env).expanduser() if env else paths.PROJECT_ROOT / "checkpoints"


def official_dir() -> Path:
    env = os.environ.get("TGD_OFFICIAL_DIR")
    if env:
        return Path(env).expanduser()
    return paths.PROJECT_ROOT.parent / "shared" / "reference" / "tgd_official"


@dataclass(frozen=True)
class ModelEntry:
    """One available network and its card."""

    name: str
    path: Path
    role: str  # teacher1 | teacher2 | student
    method: str | None
    architecture: str
    input_kind: str  # raw | pi
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    description: str | None = None
    source: str = "checkpoints"  # checkpoints | official

    @property
    def accuracy(self) -> float | None:
        """Test accuracy in percent, if the card or checkpoint records one."""
        value = self.metrics.get("accuracy", self.metrics.get("test_accuracy"))
        return None if value is None else float(value)

    @property
    def ece(self) -> float | None:
        value = self.metrics.get("ece", self.metrics.get("test_ece"))
        return None if value is None else float(value)

    @property
    def label(self) -> str:
        """Short display name, e.g. ``tgd (student)``."""
        return f"{self.name} ({ROLE_LABELS[self.role]})"

    def card(self) -> dict[str, Any]:
        """The card as one flat, JSON-ready row."""
        return {"name": self.name, "role": self.role, "method": self.method,
                "architecture": self.architecture, "input": self.input_kind,
                "recipe": self.recipe, "accuracy": self.accuracy, "ece": self.ece,
                "source": self.source, "path": str(self.path), "description": self.description}


def _stem(path: Path) -> str:
    name = path.name
    for suffix in CHECKPOINT_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _role_from_name(name: str) -> str | None:
    low = name.lower()
    for role, prefixes in (("teacher1", ("t1", "teacher1")), ("teacher2", ("t2", "teacher2"))):
        if any(low == p or low.startswith((p + "_", p + "-")) for p in prefixes):
            return role
    return None


def _file_key(path: str | Path) -> tuple[str, int, int]:
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise TGDError(f"{p}: no such checkpoint file") from None
    return str(p.resolve()), st.st_mtime_ns, st.st_size


@lru_cache(maxsize=32)
def _checkpoint(path: str, mtime_ns: int, size: int) -> Checkpoint:
    return load_checkpoint(path)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """``load_checkpoint`` cached per file version (path, mtime, size)."""
    return _checkpoint(*_file_key(path))


def _read_card(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TGDError(f"{path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict):
        raise TGDError(f"{path}: a model card must be a JSON object")
    if card.get("role") is not None and card["role"] not in ROLES:
        raise TGDError(f"{path}: role {card['role']!r} is not one of {ROLES}")
    return card


def _recipe(cfg: dict[str, Any]) -> str | None:
    if not cfg:
        return None
    parts = [f"{cfg.get('epochs')} epochs", f"batch {cfg.get('batch_size')}",
             f"lr {cfg.get('lr')}"]
    if cfg.get("method_params"):
        parts.append(", ".join(f"{k}={v}" for k, v in cfg["method_params"].items()))
    if cfg.get("train_subset"):
        parts.append(f"{cfg['train_subset']} training images")
    return "; ".join(parts)


def _entry_from_checkpoint(path: Path) -> ModelEntry:
    name = _stem(path)
    card = _read_card(path.with_name(name + ".json"))
    ckpt = read_checkpoint(path)
    cfg = ckpt.config or {}
    role = card.get("role") or _role_from_name(name) or (
        "teacher2" if ckpt.input_kind == "pi" else "student")
    return ModelEntry(
        name=name, path=path, role=role, method=card.get("method") or cfg.get("method"),
        architecture=card.get("architecture") or ckpt.model,
        input_kind=card.get("input_kind") or ckpt.input_kind,
        metrics={**ckpt.metrics, **(card.get("metrics") or {})},
        recipe=card.get("recipe") or _recipe(cfg), description=card.get("description"),
        source="checkpoints")


def _official_entries(folder: Path) -> list[ModelEntry]:
    entries = []
    for filename, (name, method, acc, description) in OFFICIAL_STUDENTS.items():
        path = folder / filename
        if path.is_file():
            entries.append(ModelEntry(
                name=f"{name} (authors)", path=path, role="student", method=method,
                architecture="wrn16_1", input_kind="raw", metrics={"accuracy": acc},
                recipe="the TGD authors' release (github.com/jeunsom/TGD)",
                description=description, source="official"))
    return entries


def discover(checkpoints: str | Path | None = None, official: str | Path | None = None, *,
             include_official: bool = True) -> list[ModelEntry]:
    """Every available network: teachers first (T1, T2), then students; unreadable files raise
    TGDError naming the file."""
    folder = Path(checkpoints) if checkpoints is not None else checkpoint_dir()
    files = sorted(p for p in folder.glob("*") if p.is_file()
                   and p.name.endswith(CHECKPOINT_SUFFIXES)) if folder.is_dir() else []
    entries = [_entry_from_checkpoint(p) for p in files]
    if include_official:
        entries += _official_entries(Path(official) if official is not None else official_dir())
    return sorted(entries, key=lambda e: ROLES.index(e.role))


def by_role(entries: list[ModelEntry], role: str) -> list[ModelEntry]:
    if role not in ROLES:
        raise TGDError(f"unknown role {role!r}; choose from {ROLES}")
    return [e for e in entries if e.role == role]


def find(entries: list[ModelEntry], name: str) -> ModelEntry:
    """The entry called ``name``; TGDError listing the available names otherwise."""
    for e in entries:
        if e.name == name:
            return e
    raise TGDError(f"no model named {name!r}; available: {[e.name for e in entries] or 'none'}")


def missing_teachers(entries: list[ModelEntry]) -> list[str]:
    """Human-readable descriptions of the teacher roles that have no checkpoint."""
    return [f"{ROLE_LABELS[r]}: no checkpoint with role {r!r} in {checkpoint_dir()}"
            for r in ("teacher1", "teacher2") if not by_role(entries, r)]


def load_network(entry: ModelEntry, device: str = "cpu"):
    """The entry's :class:`~tgd_core.nets.network.Network` (model in eval mode, with the PI
    representation it was trained on), cached per file version and device."""
    return _network(*_file_key(entry.path), device)


@lru_cache(maxsize=16)
def _network(path: str, mtime_ns: int, size: int, device: str):
    from tgd_core.nets.network import Network

    return Network.from_checkpoint(_checkpoint(path, mtime_ns, size), device)
