"""Glue shared by the views: engine errors as ``gr.Error``, uploads as network inputs, files
handed to the browser."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from app.topology_view import prepare_image
from tgd_core.core.errors import TGDError
from tgd_core.evaluation.inspection import CIFAR_SIDE, to_cifar_size
from tgd_core.nets import model_zoo

F = TypeVar("F", bound=Callable[..., Any])


def guarded(fn: F) -> F:
    """Run a handler; a :class:`TGDError` becomes a ``gr.Error`` with the same message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TGDError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def network_image(image: Any) -> tuple[np.ndarray, list[str]]:
    """An upload checked like the topology explorer's, as the 32×32 RGB image networks read,
    with notes on every conversion."""
    rgb, notes = prepare_image(image)
    h, w = rgb.shape[:2]
    if (h, w) != (CIFAR_SIDE, CIFAR_SIDE):
        notes.append(f"{w}×{h} image resized to {CIFAR_SIDE}×{CIFAR_SIDE} for the networks")
    return to_cifar_size(rgb), notes


def zoo() -> list[model_zoo.ModelEntry]:
    """The available networks (re-read each call: new checkpoints appear without a restart)."""
    return model_zoo.discover()


def missing_teachers_note(entries: list[model_zoo.ModelEntry]) -> str:
    """Markdown saying which teacher checkpoints are missing, or ''."""
    missing = model_zoo.missing_teachers(entries)
    if not missing:
        return ""
    return ("**Teachers missing** — " + "; ".join(missing) + ". Train them in the "
            "*Distillation jobs* tab (method `scratch`, network `wrn16_3`, input `raw` for T1 "
            "and `pi` for T2) and copy the resulting `best.pt` to `checkpoints/t1_*.pt` / "
            "`checkpoints/t2_*.pt`.")


def offer_files(paths: Iterable[str | Path]) -> list[str]:
    """Copies of ``paths`` in gradio's cache folder, for a handler to return: the only way the
    app hands files (a job's checkpoints, exports) to the browser. The state folder itself is
    never served (:func:`app.ui.launch_options`), and gradio would refuse to copy from it."""
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    return [save_file_to_cache(p, get_upload_folder()) for p in paths]
