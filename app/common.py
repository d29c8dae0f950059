"""Glue shared by the views: engine errors as ``gr.Error``, uploads as network inputs, files
handed to the browser."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np

from tgd_core.core.errors import TGDError
from tgd_core.data.images import as_image_batch
from tgd_core.evaluation.inspection import CIFAR_SIDE, to_cifar_size
from tgd_core.nets import model_zoo

F = TypeVar("F", bound=Callable[..., Any])
MIN_SIDE, MAX_SIDE = 2, 1024  # pixels per side an upload may have


def guarded(fn: F) -> F:
    """Run a handler; a :class:`TGDError` becomes a ``gr.Error`` with the same message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TGDError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def prepare_image(image: Any) -> tuple[np.ndarray, list[str]]:
    """Check an uploaded image; return it as H×W×3 uint8 with notes on any conversion."""
    if image is None:
        raise TGDError("upload an image, or pick one of the examples")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise TGDError(f"not an image: array of shape {arr.shape}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise TGDError(f"image of {w}×{h} pixels is too small (at least {MIN_SIDE} per side)")
    if max(h, w) > MAX_SIDE:
        raise TGDError(f"image of {w}×{h} pixels is too large (at most {MAX_SIDE} per side)")
    notes = []
    channels = arr.shape[2] if arr.ndim == 3 else 1
    if channels == 1:
        notes.append("grey image: its channel is used as R, G and B")
    elif channels == 4:
        notes.append("RGBA image: the alpha channel is ignored")
    batch = as_image_batch(arr, channels=3)
    if batch.dtype != np.uint8:
        batch = np.clip(np.round(batch * 255 if batch.max() <= 1 else batch), 0, 255)
        batch = batch.astype(np.uint8)
        notes.append("float pixels were converted to 0–255")
    return batch[0], notes


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
