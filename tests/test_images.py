"""Input validation and image loading."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from tgd_core.core.errors import TGDError
from tgd_core.data.images import HASH_BLOCK, as_image_batch, content_hash, load_images


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
