"""The ``tgd`` commands (one module each) and the input/output checks they share.

Each helper turns a bad file, config or output path of the user's into a :class:`TGDError`
that names the path and the problem, before any work is done where it can.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import check_replaceable


def read_json_object(path: str | Path, what: str = "config") -> dict[str, Any]:
    """The JSON object in the file ``path``; TGDError naming the file if it cannot be read,
    is not JSON, or holds something other than an object."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise TGDError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TGDError(f"{path}: cannot read {what} (not a text file)") from None
    return parse_json_object(text, f"{path}: {what}")


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """``text`` parsed as a JSON object; TGDError starting with ``what`` otherwise."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TGDError(f"{what} is not valid JSON ({exc})") from None
    except RecursionError:
        raise TGDError(f"{what}: JSON nested too deeply to read") from None
    if not isinstance(data, dict):
        raise TGDError(f"{what} must be a JSON object {{\"field\": value, ...}}, got "
                       f"{type(data).__name__}")
    return data


def apply_assignments(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """Apply each ``--set KEY=VALUE`` to ``config`` (in place; returned). VALUE is read as JSON
    when it parses, else as a string; a dotted KEY sets a nested field (``pi.mode=cubical``)."""
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key.strip():
            raise TGDError(f"--set takes KEY=VALUE, got {assignment!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        except RecursionError:
            raise TGDError(f"--set {key.strip()}: JSON nested too deeply to read") from None
        *parents, leaf = key.strip().split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise TGDError(f"--set {key}: {part!r} is not an object")
        node[leaf] = value
    return config


def _nearest_existing(path: Path) -> Path:
    """``path`` itself or its closest ancestor that exists."""
    return next(p for p in (path, *path.parents) if p.exists())


def check_output_file(path: str | Path) -> None:
    """TGDError unless the file ``path`` can be written: a regular file or none (not a folder,
    FIFO or device: :func:`check_replaceable`), in an existing, writable folder. (Checked
    before the work, so a bad path fails at once.)"""
    path = Path(path)
    check_replaceable(path)
    folder = path.parent
    existing = _nearest_existing(folder)
    if not existing.is_dir():
        raise TGDError(f"cannot write {path}: {existing} is a file, not a folder")
    if existing != folder:
        raise TGDError(f"cannot write {path}: no such folder {folder}")
    if not os.access(folder, os.W_OK):
        raise TGDError(f"cannot write {path}: folder {folder} is not writable")


def check_output_folder(path: str | Path) -> None:
    """TGDError unless ``path`` is a writable folder or can be created as one."""
    path = Path(path)
    existing = _nearest_existing(path)
    if existing == path and not path.is_dir():
        raise TGDError(f"cannot write to {path}: it is a file, not a folder")
    if not existing.is_dir():
        raise TGDError(f"cannot create folder {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK):
        raise TGDError(f"cannot write to {path}: folder {existing} is not writable")


def write_error(path: str | Path, exc: OSError) -> TGDError:
    """The TGDError for an OSError met while writing ``path`` (disk full, read-only, …)."""
    return TGDError(f"cannot write {path}: {exc.strerror or exc}")
