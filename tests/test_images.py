"""Input validation and image loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from tgd_core.core.errors import TGDError
from tgd_core.data.images import (
    HASH_BLOCK,
    ImageFileError,
    as_image_batch,
    content_hash,
    load_image_file,
    load_images,
    read_image,
)


def test_shapes_are_normalised():
    grey = np.zeros((5, 6), np.uint8)
    assert as_image_batch(grey).shape == (1, 5, 6, 3)
    assert as_image_batch(grey, channels=None).shape == (1, 5, 6, 1)
    assert as_image_batch(np.zeros((4, 5, 6), np.uint8)).shape == (4, 5, 6, 3)  # grey batch
    assert as_image_batch(np.zeros((5, 6, 4), np.uint8)).shape == (1, 5, 6, 3)  # RGBA
    assert as_image_batch([np.zeros((5, 6, 3))] * 2).shape == (2, 5, 6, 3)
    assert as_image_batch(np.ones((2, 2), bool)).max() == 255
    assert as_image_batch(np.full((2, 2), 7, np.int64)).dtype == np.uint8


def test_grey_conversion_uses_luma():
    rgb = np.zeros((1, 1, 1, 3), np.uint8)
    rgb[..., 0] = 100
    assert as_image_batch(rgb, channels=1)[0, 0, 0, 0] == pytest.approx(29.9)


@pytest.mark.parametrize("bad, message", [
    ([], "empty list"),
    ([np.zeros((2, 2)), np.zeros((3, 3))], "different sizes"),
    (np.zeros((5000, 2), np.uint8), "too large"),
    (np.array([-1, 3]).reshape(1, 2), r"\[0, 255\]"),
    (np.full((2, 2), np.inf), "NaN or infinite"),
    (np.zeros((2, 2), np.complex64), "unsupported dtype"),
])
def test_bad_arrays(bad, message):
    with pytest.raises(TGDError, match=message):
        as_image_batch(bad)


def test_load_images_from_files_folders_and_npy(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (8, 9, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    Image.fromarray(a[..., 0]).save(tmp_path / "b.png")  # grey → RGB
    (tmp_path / "notes.txt").write_text("ignored")
    images, names = load_images(tmp_path)
    assert names == ["a.png", "b.png"] and images.shape == (2, 8, 9, 3)
    np.testing.assert_array_equal(images[0], a)
    np.testing.assert_array_equal(images[1], np.repeat(a[..., :1], 3, axis=-1))
    Image.fromarray(a[:4]).save(tmp_path / "c.png")
    images, names = load_images(tmp_path)
    assert isinstance(images, list) and len(images) == 3  # mixed sizes stay a list
    np.save(tmp_path / "x.npy", a[None])
    images, names = load_images(tmp_path / "x.npy")
    assert images.shape == (1, 8, 9, 3) and names == ["0"]


def test_load_errors(tmp_path):
    with pytest.raises(TGDError, match="no such file"):
        load_images(tmp_path / "missing.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TGDError, match="no image files"):
        load_images(tmp_path / "empty")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(TGDError, match="not a readable .npy"):
        load_images(tmp_path / "bad.npy")
    (tmp_path / "bad.png").write_bytes(b"garbage")
    with pytest.raises(TGDError, match="not a readable image"):
        load_images(tmp_path / "bad.png")


GRADIENT = np.linspace(0.0, 1.0, 64 * 16).reshape(16, 64)  # 0 … 1 left to right


@pytest.mark.parametrize("mode, values, expected, note", [
    ("I;16", np.round(GRADIENT * 65535).astype(np.uint16), GRADIENT * 255,
     "I;16 grey image read as 0–65535 and scaled to 0–255"),
    ("F", GRADIENT.astype(np.float32), GRADIENT * 255,
     "F grey image read as 0–1 and scaled to 0–255"),
    ("F", (GRADIENT * 200).astype(np.float32), GRADIENT * 200, "F grey image read as 0–255"),
    ("I", np.round(GRADIENT * 65535).astype(np.int32), GRADIENT * 255,
     "I grey image read as 0–65535 and scaled to 0–255"),
    ("I", np.round(GRADIENT * 1e6 - 5e5).astype(np.int32), GRADIENT * 255,
     "I grey image stretched from its range [-500000, 500000] to 0–255"),
])
def test_high_depth_greys_are_scaled_not_clipped(tmp_path, mode, values, expected, note):
    """A 16-bit PNG or a float TIFF keeps its tones: PIL's convert("RGB") clips them to
    0–255 (a 16-bit gradient all but white, a [0, 1] float one black)."""
    path = tmp_path / ("grey.png" if mode == "I;16" else "grey.tif")
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == mode
    grey, notes, size = read_image(path, max_pixels=10**6)
    assert grey.dtype == np.uint8 and notes == [note] and size == (64, 16)
    assert np.abs(grey.astype(float) - expected).max() <= 0.5 + 1e-9
    rgb = load_image_file(path)
    assert rgb.shape == (16, 64, 3) and (rgb == grey[..., None]).all()


def test_read_image_applies_exif_orientation_and_converts_modes(tmp_path):
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :5] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    Image.fromarray(wide).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    image, notes, size = read_image(tmp_path / "rotated.jpg", max_pixels=10**6)
    assert image.shape == (30, 10, 3) and notes == [] and size == (10, 30)
    assert image[:5].mean() > 200 and image[-5:].mean() < 50  # the white edge is on top
    Image.new("CMYK", (4, 2), (0, 255, 0, 0)).save(tmp_path / "cmyk.tif")
    image, notes, _ = read_image(tmp_path / "cmyk.tif", max_pixels=10**6)
    assert image.shape == (2, 4, 3) and notes == ["CMYK image converted to RGB"]


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_when_it_will_be_shrunk(tmp_path):
    """With ``longest``, libjpeg decodes at the smallest of 1/2, 1/4, 1/8 that keeps that many
    pixels a side (a 40-megapixel photo in a tenth of the time); the size is the image's own,
    EXIF orientation applied; other formats, and JPEGs near ``longest``, decode whole."""
    photo = np.kron(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8),
                    np.ones((100, 100, 1), np.uint8))  # 4000×3000, blocks of 100 pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned: 3000×4000
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    pixels, notes, size = read_image(tmp_path / "photo.jpg", max_pixels=10**8, longest=1024)
    assert pixels.shape == (2000, 1500, 3) and size == (3000, 4000) and notes == []  # 1/2
    pixels, _, size = read_image(tmp_path / "photo.jpg", max_pixels=10**8, longest=300)
    assert pixels.shape == (500, 375, 3) and size == (3000, 4000)  # 1/8
    whole = read_image(tmp_path / "photo.jpg", max_pixels=10**8, longest=2500).pixels
    assert whole.shape == (4000, 3000, 3)
    reduced = np.kron(pixels.astype(float), np.ones((8, 8, 1)))
    assert np.abs(reduced - whole).mean() < 8  # the same picture, block by block
    assert read_image(tmp_path / "photo.png", max_pixels=10**8, longest=300).pixels.shape == (
        3000, 4000, 3)


def test_read_image_refuses_bad_files_without_decoding_them(tmp_path):
    bomb = tmp_path / "bomb.png"  # 20000×20000 one-bit pixels: a 50 KB file, 400 megapixels
    Image.new("1", (20_000, 20_000)).save(bomb)
    big = tmp_path / "big.png"
    Image.new("1", (5000, 5000)).save(big)
    nan = tmp_path / "nan.tif"
    Image.fromarray(np.full((2, 2), np.nan, np.float32)).save(nan)
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    for name, problem, too_large in [
            ("bomb.png", "too large (over 178,956,970 pixels", True),
            ("big.png", "5000×5000 pixels is too large (at most 1 megapixels)", True),
            ("nan.tif", "not a readable image (F pixels hold NaN or infinity)", False),
            ("empty.png", "the file is empty", False),
            ("text.png", "not a readable image (cannot identify its format)", False),
            ("missing.png", "no such file", False)]:
        with pytest.raises(ImageFileError) as caught:
            read_image(tmp_path / name, max_pixels=10**6)
        error = caught.value
        assert error.problem.startswith(problem) and error.too_large == too_large, name
        assert str(error) == f"{tmp_path / name}: {error.problem}"
        assert str(tmp_path) not in error.problem


def test_content_hash_is_the_sha256_of_the_blocks_digests_and_length():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2 * HASH_BLOCK + 12345) // 3072 * 3072, np.uint8)
    images = images.reshape(-1, 32, 32, 3)
    data = images.tobytes()
    digests = b"".join(hashlib.sha256(data[i:i + HASH_BLOCK]).digest()
                       for i in range(0, len(data), HASH_BLOCK))
    expected = hashlib.sha256(digests + len(data).to_bytes(8, "little")).hexdigest()[:16]
    assert len(data) > 2 * HASH_BLOCK  # three blocks, hashed on threads
    assert content_hash(images) == expected
    assert content_hash(np.asfortranarray(images)) == expected  # same values, other layout
    changed = images.copy()
    changed[-1, -1, -1, -1] ^= 1
    assert content_hash(changed) != expected
    small = images[:5]
    one = hashlib.sha256(hashlib.sha256(small.tobytes()).digest()
                         + small.nbytes.to_bytes(8, "little")).hexdigest()[:16]
    assert content_hash(small) == one
