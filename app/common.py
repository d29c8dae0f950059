"""Glue shared by the views: engine errors as ``gr.Error``, uploads decoded and checked in the
handlers (:func:`image_upload`, :func:`load_image`), plots serialised once
(:func:`plot_output`), stage timings, files handed to the browser."""

from __future__ import annotations

import contextlib
import functools
import time
from abc import ABCMeta
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData

from tgd_core.core.errors import TGDError
from tgd_core.data.images import DecodedImage, ImageFileError, as_image_batch, read_image
from tgd_core.evaluation.inspection import CIFAR_SIDE, to_cifar_size
from tgd_core.nets import model_zoo

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=gr.components.Component)
MIN_SIDE, MAX_SIDE = 2, 1024  # pixels per side an analysed image may have (larger: downscaled)
MAX_UPLOAD_PIXELS = 40_000_000  # a decoded upload larger than this is refused, not downscaled
IMAGE_FIELD = "Image"
IMAGE_FIX = "upload a PNG or JPEG"


def guarded(fn: F) -> F:
    """Run a handler; a :class:`TGDError` becomes a ``gr.Error`` with the same message."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TGDError as exc:
            raise gr.Error(str(exc)) from None

    return wrapper  # type: ignore[return-value]


def _pass_through_preprocess(self: Any, payload: Any) -> Any:
    """An image's upload as its file path (:func:`upload_path`); any other value as sent."""
    if not isinstance(self, gr.Image):
        return payload
    try:
        return upload_path(payload)
    except TGDError as exc:
        raise gr.Error(str(exc)) from None


@functools.cache
def _pass_through_class(base: type) -> type:
    """``base`` (a gradio component class) with :func:`pass_through`'s preprocess, drawn by the
    frontend as ``base`` (``is_template``). Made with ``ABCMeta.__new__``: gradio's
    ``ComponentMeta`` would write a ``.pyi`` stub beside this module for a class statement
    (its events and wrapped ``__init__`` are inherited from ``base``)."""
    attrs = {"is_template": True, "preprocess": _pass_through_preprocess,
             "__module__": __name__, "__doc__": f"{base.__name__} that passes values on raw."}
    return ABCMeta.__new__(type(base), f"PassThrough{base.__name__}", (base,), attrs)


def pass_through(component: C) -> C:
    """``component`` as a class whose preprocess hands the handler what was sent, unchecked (an
    upload: its file path, undecoded): the handler checks it with a sentence naming the field
    and the fix, where gradio answers "Value -5 is less than minimum value 1." or "Could not
    preprocess input component ... UnidentifiedImageError" with temp paths. A class, not an
    attribute: gradio rebuilds a component from its class when a handler updates it."""
    component.__class__ = _pass_through_class(type(component))
    return component


def upload_path(upload: Any) -> Any:
    """The file path of an upload (gradio's ``FileData``/``ImageData``, or its dict as an event
    without preprocessing passes it), or ``upload`` itself (a path given by Python code, an
    array, None). The path a client sends must lie in gradio's upload folder (where uploads
    and the examples' copies land): gradio does not check every payload, and any other path
    would read this server's files. TGDError otherwise."""
    from gradio.utils import get_upload_folder, is_in_or_equal

    if isinstance(upload, dict) or hasattr(upload, "path"):
        path = upload.get("path") if isinstance(upload, dict) else upload.path
        if not path or not is_in_or_equal(str(path), get_upload_folder()):
            raise TGDError(f"{IMAGE_FIELD}: not an uploaded file; {IMAGE_FIX}")
        return str(path)
    return upload


def image_upload(**kwargs: Any) -> gr.Image:
    """A ``gr.Image`` whose upload reaches the handler undecoded, as its file path: the handler
    decodes it (:func:`load_image`), so a file that is not an image gets a sentence naming the
    field and the fix (:func:`pass_through`)."""
    return pass_through(gr.Image(type="filepath", image_mode=None, **kwargs))


def _decode(path: str | Path, longest: int) -> DecodedImage:
    """An image file's pixels, notes on any conversion and own size (:func:`read_image`: EXIF
    orientation applied, high-depth greys scaled, modes but L, RGB and RGBA converted to RGB,
    a large JPEG decoded nearer to ``longest`` pixels a side); TGDError naming the field and
    the fix for an empty file, a file that is not an image, or one over
    :data:`MAX_UPLOAD_PIXELS`."""
    try:
        return read_image(path, max_pixels=MAX_UPLOAD_PIXELS, longest=longest)
    except ImageFileError as exc:
        fix = "upload a smaller image" if exc.too_large else IMAGE_FIX
        raise TGDError(f"{IMAGE_FIELD}: {exc.problem}; {fix}") from None


def analysis_shape(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) with the longest side at most ``longest``, the aspect kept (a short
    side never below :data:`MIN_SIDE` unless it was already)."""
    scale = min(1.0, longest / max(width, height))
    return tuple(max(round(side * scale), min(side, MIN_SIDE)) for side in (width, height))


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H×W or H×W×C, any numeric dtype) resized to ``size`` = (width, height) with
    Lanczos, channel by channel, in its own dtype and value range."""
    from PIL import Image

    planes = image[..., None] if image.ndim == 2 else image
    resized = np.stack([np.asarray(Image.fromarray(planes[..., c].astype(np.float32))
                                   .resize(size, Image.LANCZOS, reducing_gap=3.0))
                        for c in range(planes.shape[-1])], axis=-1)
    resized = np.clip(resized, image.min(), image.max())
    if not np.issubdtype(image.dtype, np.floating):
        resized = np.round(resized)
    resized = resized.astype(image.dtype)
    return resized[..., 0] if image.ndim == 2 else resized


def prepare_image(image: Any) -> tuple[np.ndarray, list[str]]:
    """Check an image array (or an upload: decoded by :func:`load_image`); return it as
    H×W×3 uint8 with notes on any conversion. Sides between :data:`MIN_SIDE` and
    :data:`MAX_SIDE` pixels."""
    image = upload_path(image)
    if image is None:
        raise TGDError(f"{IMAGE_FIELD}: upload an image, or pick one of the examples")
    if isinstance(image, (str, Path)):
        return load_image(image, MAX_SIDE)
    arr = _array(image)
    if arr.ndim not in (2, 3) or arr.size == 0 or (arr.ndim == 3
                                                   and arr.shape[2] not in (1, 3, 4)):
        raise TGDError(f"{IMAGE_FIELD}: not an image: array of shape {arr.shape} (an image "
                       "is H×W, or H×W×C with 1, 3 or 4 channels)")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise TGDError(f"{IMAGE_FIELD}: {w}×{h} pixels is too small (at least {MIN_SIDE} per "
                       "side); upload a larger image")
    if max(h, w) > MAX_SIDE:
        raise TGDError(f"{IMAGE_FIELD}: {w}×{h} pixels is too large (at most {MAX_SIDE} per "
                       "side); downscale it first")
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


def _array(image: Any) -> np.ndarray:
    """``image`` (an array or nested lists) as an array; TGDError for ragged lists."""
    try:
        return np.asarray(image)
    except (ValueError, TypeError) as exc:
        raise TGDError(f"{IMAGE_FIELD}: not an image ({str(exc).splitlines()[0]})") from None


def load_image(image: Any, longest: int = MAX_SIDE) -> tuple[np.ndarray, list[str]]:
    """An upload (file path, as :func:`image_upload` passes it, or an array) as H×W×3 uint8,
    downscaled to at most ``longest`` pixels per side (≤ :data:`MAX_SIDE`) with a note saying
    so, checked by :func:`prepare_image`; notes on every conversion."""
    image = upload_path(image)
    if image is None:
        return prepare_image(None)
    longest = min(longest, MAX_SIDE)
    if isinstance(image, (str, Path)):
        arr, notes, (w, h) = _decode(image, longest)
    else:
        arr, notes = _array(image), []
        if arr.ndim not in (2, 3) or not (np.issubdtype(arr.dtype, np.number)
                                          or arr.dtype == np.bool_):
            return prepare_image(arr)  # refuses what is not an image, with its message
        h, w = arr.shape[:2]
    if h * w > MAX_UPLOAD_PIXELS:
        raise TGDError(f"{IMAGE_FIELD}: {w}×{h} pixels is too large (at most "
                       f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels); upload a smaller image")
    size = analysis_shape(w, h, longest)
    if size != arr.shape[1::-1]:  # a large JPEG arrives decoded nearer to it already
        arr = downscale(arr, size)
    if size != (w, h):
        notes.insert(0, f"Downscaled to {size[0]}×{size[1]} (original {w}×{h}).")
    rgb, more = prepare_image(arr)
    return rgb, notes + more


def network_image(image: Any) -> tuple[np.ndarray, list[str]]:
    """An upload decoded and checked like the topology explorer's (larger ones downscaled),
    as the 32×32 RGB image networks read, with notes on every conversion."""
    rgb, notes = load_image(image)
    h, w = rgb.shape[:2]
    if (h, w) != (CIFAR_SIDE, CIFAR_SIDE):
        notes.append(f"{w}×{h} image resized to {CIFAR_SIDE}×{CIFAR_SIDE} for the networks")
    return to_cifar_size(rgb), notes


@functools.lru_cache(maxsize=1)
def plot_template() -> dict[str, Any]:
    """plotly's ``plotly_white`` template as plain JSON (read once)."""
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def _contiguous(value: Any) -> Any:
    """orjson's fallback: a strided numpy view (a column) as a contiguous copy."""
    if isinstance(value, np.ndarray):
        return np.ascontiguousarray(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def plot_output(spec: dict[str, Any]) -> PlotData:
    """A plotly figure given as plain JSON (``{"data": [...], "layout": {...}}``, numpy arrays
    allowed) as ``gr.Plot``'s payload, serialised once by orjson with the ``plotly_white``
    template: plotly's validation and ``to_json`` cost ~100 ms a figure, this ~1 ms."""
    import orjson

    layout = {"template": plot_template(), **spec.get("layout", {})}
    text = orjson.dumps({"data": spec["data"], "layout": layout}, default=_contiguous,
                        option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return PlotData(type="plotly", plot=text)


class StageTimer:
    """Wall-clock milliseconds of a handler's named stages, shown as "decode 3 ms · …"."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - t0) * 1000

    def line(self) -> str:
        return " · ".join(f"{name} {ms:.0f} ms" if ms >= 1 else f"{name} {ms:.1f} ms"
                          for name, ms in self.stages.items())


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
