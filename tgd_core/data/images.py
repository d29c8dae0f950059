"""Validating and loading images: arrays, image files and folders of images.

Every entry point of the engine passes user images through :func:`as_image_batch`, so a wrong
dtype, shape, NaN or an unreadable file gives one clear :class:`~tgd_core.core.errors.TGDError`
instead of a failure deep inside a library.
"""

from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tgd_core.core.errors import TGDError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
MAX_IMAGE_SIDE = 4096


def as_image_batch(images, *, channels: int | None = 3, name: str = "images") -> np.ndarray:
    """Return ``images`` as an ``N×H×W×C`` array, checking shape and values.

    Accepted: ``H×W`` (one grey image), ``H×W×C`` with C in {1, 3, 4} (one image),
    ``N×H×W`` (grey batch) or ``N×H×W×C``. With ``channels=3``, grey is replicated to RGB and
    the alpha channel of RGBA is dropped; with ``channels=None`` the channels are kept.
    Integer images must lie in [0, 255] and are returned as uint8; float images must be finite
    and are returned as float64. Booleans become 0/255 uint8.
    """
    arr = _nhwc(_stacked(images, name), name)
    arr = _pixel_values(arr, name)
    if channels == 3:
        if arr.shape[-1] == 1:
            arr = np.repeat(arr, 3, axis=-1)
        elif arr.shape[-1] == 4:
            arr = arr[..., :3]
    elif channels == 1:
        arr = to_grey(arr)[..., None]
    return np.ascontiguousarray(arr)


def _stacked(images, name: str) -> np.ndarray:
    """A list or tuple of same-sized images as one array; any other input as an array."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise TGDError(f"{name}: empty list, need at least one image")
        shapes = {np.shape(im) for im in images}
        if len(shapes) != 1:
            raise TGDError(
                f"{name}: images of different sizes {sorted(shapes)[:3]}... cannot be stacked; "
                "pass them one at a time or as a list to a function that accepts lists"
            )
        images = np.stack([np.asarray(im) for im in images])
    arr = np.asarray(images)
    if arr.dtype == object:
        raise TGDError(f"{name}: expected a numeric array, got an object array")
    if arr.size == 0:
        raise TGDError(f"{name}: empty array of shape {arr.shape}")
    return arr


def _nhwc(arr: np.ndarray, name: str) -> np.ndarray:
    """``arr`` as N×H×W×C (:func:`as_image_batch`'s accepted shapes), its size checked."""
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        arr = arr[None] if arr.shape[-1] in (1, 3, 4) else arr[..., None]
    elif arr.ndim != 4:
        raise TGDError(
            f"{name}: expected H×W, H×W×C, N×H×W or N×H×W×C, got an array of shape {arr.shape}"
        )
    if arr.shape[-1] not in (1, 3, 4):
        raise TGDError(f"{name}: expected 1, 3 or 4 channels (last axis), got shape {arr.shape}")
    if max(arr.shape[1], arr.shape[2]) > MAX_IMAGE_SIDE:
        raise TGDError(f"{name}: image of {arr.shape[1]}×{arr.shape[2]} pixels is too large "
                       f"(at most {MAX_IMAGE_SIDE} per side)")
    return arr


def _pixel_values(arr: np.ndarray, name: str) -> np.ndarray:
    """Booleans as 0/255 uint8, integers in [0, 255] as uint8, finite floats as float64."""
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise TGDError(f"{name}: integer pixel values must lie in [0, 255], got [{lo}, {hi}]")
        return arr.astype(np.uint8, copy=False)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise TGDError(f"{name}: contains NaN or infinite values")
        return arr.astype(np.float64, copy=False)
    raise TGDError(f"{name}: unsupported dtype {arr.dtype}")


#: Bytes per block of :func:`content_hash`.
HASH_BLOCK = 16 << 20


def content_hash(images: np.ndarray) -> str:
    """Short digest of an array's bytes: identifies a set of images (cache keys). SHA-256 of
    the SHA-256 digests of its 16 MiB blocks and its length, the blocks hashed on up to four
    threads (hashlib releases the GIL; CPUs with SHA extensions hash about 1.6 GB/s a core):
    CIFAR-10's 184 MB in 0.06 s on two cores, against 0.23 s for one BLAKE2b pass."""
    data = memoryview(np.ascontiguousarray(images)).cast("B")
    blocks = [data[start:start + HASH_BLOCK] for start in range(0, len(data), HASH_BLOCK)]
    if len(blocks) > 1:
        with ThreadPoolExecutor(min(4, len(blocks), os.cpu_count() or 1)) as pool:
            digests = list(pool.map(lambda block: hashlib.sha256(block).digest(), blocks))
    else:
        digests = [hashlib.sha256(block).digest() for block in blocks]
    tree = hashlib.sha256(b"".join(digests) + len(data).to_bytes(8, "little"))
    return tree.hexdigest()[:16]


def to_grey(images: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma (as PIL's ``convert('L')``) of ``N×H×W×C`` images, as float64 ``N×H×W``."""
    if images.shape[-1] == 1:
        return images[..., 0].astype(np.float64)
    rgb = images[..., :3].astype(np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


class ImageFileError(TGDError):
    """An image file that cannot be read: ``problem`` says why without naming the file (the
    message prefixes its path), ``too_large`` whether its size is the reason."""

    def __init__(self, path: Path, problem: str, *, too_large: bool = False) -> None:
        super().__init__(f"{path}: {problem}")
        self.problem, self.too_large = problem, too_large


class DecodedImage(NamedTuple):
    """What :func:`read_image` decoded: the pixels, notes on their conversion, and the image's
    own (width, height), EXIF orientation applied — larger than the pixels' where a JPEG was
    decoded at a reduced scale."""

    pixels: np.ndarray
    notes: list[str]
    size: tuple[int, int]


def read_image(path: str | Path, *, max_pixels: int, longest: int | None = None
               ) -> DecodedImage:
    """An image file's first frame as ``H×W`` (grey), ``H×W×3`` or ``H×W×4`` uint8, EXIF
    orientation applied, with a note on every conversion: 16-bit, 32-bit and float greys are
    scaled to 8 bits (:func:`grey_to_uint8`), other modes but L, RGB and RGBA converted to RGB.
    :class:`ImageFileError` for a missing or empty file, one that is not an image, or one of
    more than ``max_pixels`` pixels — read from its header, so that no decompression bomb is
    ever decoded. ``longest``: the caller shrinks the image to at most this many pixels a side
    anyway, so a JPEG is decoded at the smallest of 1/2, 1/4, 1/8 of its size that keeps that
    many (libjpeg's DCT scaling, :func:`_draft`): a 40-megapixel photo in a tenth of the time
    and memory."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise ImageFileError(path, "the file is empty")
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageFileError(path, f"{w}×{h} pixels is too large (at most "
                                     f"{max_pixels / 1e6:.3g} megapixels)", too_large=True)
            if longest:
                _draft(im, longest)
            decoded = im.size
            im = ImageOps.exif_transpose(im)
            size = (h, w) if im.size != decoded else (w, h)  # turned by its EXIF orientation
            if im.mode in ("L", "RGB", "RGBA"):
                return DecodedImage(np.asarray(im), [], size)
            if im.mode == "F" or im.mode.startswith("I"):
                return DecodedImage(*grey_to_uint8(np.asarray(im), im.mode, path), size)
            return DecodedImage(np.asarray(im.convert("RGB")),
                                [f"{im.mode} image converted to RGB"], size)
    except ImageFileError:
        raise
    except Image.DecompressionBombError:  # over twice PIL's limit: refused as it opens
        raise ImageFileError(path, f"too large (over {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
                             "twice PIL's decompression-bomb limit)", too_large=True) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        reason = "cannot identify its format" if isinstance(exc, UnidentifiedImageError) \
            else f"{exc.__class__.__name__}: {str(exc).replace(str(path), 'the file')}"
        raise ImageFileError(path, f"not a readable image ({reason})") from None


def _draft(im, longest: int) -> None:
    """Have a JPEG ``im`` decode at the smallest DCT scale whose sides stay at least those of
    the image shrunk to ``longest`` pixels a side (PIL's ``draft``; other formats as they
    are)."""
    w, h = im.size
    if im.format == "JPEG" and max(w, h) >= 2 * longest:
        factor = longest / max(w, h)
        im.draft(im.mode, (max(2, math.ceil(w * factor)), max(2, math.ceil(h * factor))))


#: The ranges a high-depth grey image's values are read in, narrowest first (float: [0, 1]).
GREY_RANGES = {"F": (1.0, 255.0, 65535.0), "I": (255.0, 65535.0)}


def grey_to_uint8(values: np.ndarray, mode: str, path: Path) -> tuple[np.ndarray, list[str]]:
    """A 16-bit (``I;16*``), 32-bit integer (``I``) or float (``F``) grey image as uint8 with
    a note saying how: 16-bit by its full range (÷ 257); the others by the narrowest of
    [0, 1] (float only), [0, 255] and [0, 65535] that holds their values, else stretched from
    their own minimum and maximum. A plain conversion would clip them to 0–255 instead: a
    16-bit photo all but white, a [0, 1] float image black."""
    v = values.astype(np.float64)
    if not np.isfinite(v).all():
        raise ImageFileError(path, f"not a readable image ({mode} pixels hold NaN or infinity)")
    lo, hi = float(v.min()), float(v.max())
    full = 65535.0 if mode.startswith("I;16") else next(
        (top for top in GREY_RANGES.get(mode, ()) if lo >= 0 and hi <= top), None)
    if full is not None:
        scaled = v * (255.0 / full)
        note = f"{mode} grey image read as 0–{full:g}" + (" and scaled to 0–255"
                                                         if full != 255 else "")
    else:
        scaled = (v - lo) * (255.0 / (hi - lo or 1.0))
        note = f"{mode} grey image stretched from its range [{lo:g}, {hi:g}] to 0–255"
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8), [note]


def load_image_file(path: str | Path) -> np.ndarray:
    """Read one image file as ``H×W×3`` uint8 (:func:`read_image`: grey, high-depth, palette
    and RGBA converted to RGB; at most :data:`MAX_IMAGE_SIDE` pixels a side)."""
    image = read_image(path, max_pixels=MAX_IMAGE_SIDE ** 2).pixels
    return as_image_batch(image, channels=3, name=str(path))[0]


def load_images(path: str | Path) -> tuple[np.ndarray | list[np.ndarray], list[str]]:
    """Load images from a ``.npy`` array, an image file or a folder of image files.

    Returns ``(images, names)``: an ``N×H×W×C`` array when all images share a size, else a list
    of ``H×W×3`` arrays; ``names`` identifies each image (file names, or indices for ``.npy``).
    """
    path = Path(path)
    if not path.exists():
        raise TGDError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TGDError(f"{path}: folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        images = [load_image_file(p) for p in files]
        names = [p.name for p in files]
        if len({im.shape for im in images}) == 1:
            return np.stack(images), names
        return images, names
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: a zero-byte file
            raise TGDError(f"{path}: not a readable .npy array ({exc})") from None
        batch = as_image_batch(arr, channels=None, name=str(path))
        return batch, [str(i) for i in range(len(batch))]
    return load_image_file(path)[None], [path.name]
