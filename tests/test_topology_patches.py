"""Cubical PIs of image patches (``cubical.patches = g``): a g×g grid of equal patches, each
patch's PIs tiled in the grid's layout. References: the existing whole-image functions on the
cropped patches, and hand-made images whose only structure lies in one known patch."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.topology.cache import PICache, cached_pis
from tgd_core.topology.cubical import (
    CubicalConfig,
    CubicalPersistence,
    cubical_diagrams,
    cubical_persistence_images,
    patch_images,
)
from tgd_core.topology.paper import PaperPIConfig, to_uint8
from tgd_core.topology.pimage import PersistenceImageConfig, persistence_images
from tgd_core.topology.representation import (
    CubicalPIConfig,
    compute_pis,
    n_maps,
    representation_from_dict,
    representation_key,
    summarise,
)

PI = PersistenceImageConfig(resolution=(8, 8))
PATCHED = CubicalPIConfig(CubicalConfig(patches=4), PI)  # 32×32 images → 8×8 patches → 32×32


def crop(images: np.ndarray, g: int, i: int, j: int) -> np.ndarray:
    """Patch (i, j) of a g×g grid of N×H×W×C images, as its own contiguous images."""
    h, w = images.shape[1] // g, images.shape[2] // g
    return np.ascontiguousarray(images[:, i * h:(i + 1) * h, j * w:(j + 1) * w])


def tile(maps: np.ndarray, g: int, i: int, j: int) -> np.ndarray:
    """Tile (i, j) of N×K×(g·r)×(g·c) tiled maps."""
    r, c = maps.shape[2] // g, maps.shape[3] // g
    return maps[:, :, i * r:(i + 1) * r, j * c:(j + 1) * c]


# --- patches = 1 is today's representation -----------------------------------------------------


def test_one_patch_is_the_whole_image_bit_for_bit(cifar_test_images):
    images = cifar_test_images[:8]
    for config in (CubicalConfig(), CubicalConfig(channels="grey", filtration="superlevel")):
        ours = cubical_persistence_images(images, config, PI)
        assert np.array_equal(ours, cubical_persistence_images(
            images, CubicalConfig(**{**vars(config), "patches": 1}), PI))
        # the generic route: the diagrams, then persistence_images of each one
        dgms = [d for per_image in cubical_diagrams(images, config)
                for per_channel in per_image for d in per_channel]
        reference = persistence_images(dgms, PI).reshape(ours.shape)
        assert np.array_equal(ours, reference)


def test_the_default_dict_and_cache_key_are_unchanged():
    old = {"mode": "cubical", "homology_dimensions": (0, 1), "filtration": "sublevel",
           "channels": "rgb", "construction": "top", "scale": 255.0}  # before `patches` existed
    assert CubicalConfig().to_dict() == old == CubicalConfig(patches=1).to_dict()
    assert representation_key(CubicalPIConfig()) == "f245e26c21af2312"  # caches on disk
    assert representation_key(CubicalPIConfig(CubicalConfig(patches=1))) == "f245e26c21af2312"
    assert representation_from_dict({"mode": "cubical", "cubical": old}) == CubicalPIConfig()


def test_patches_round_trip_through_json_and_change_the_key():
    d = json.loads(json.dumps(PATCHED.to_dict()))
    assert d["cubical"]["patches"] == 4
    assert representation_from_dict(d) == PATCHED
    assert representation_key(PATCHED) != representation_key(CubicalPIConfig(image=PI))
    assert n_maps(PATCHED) == 6  # maps per image: channels × homology dimensions, as before


# --- patches = g: the patches' PIs, tiled ------------------------------------------------------


@pytest.mark.parametrize("config", [
    CubicalConfig(patches=4),
    CubicalConfig(patches=2, homology_dimensions=(1,)),
    CubicalConfig(patches=4, channels="grey"),
    CubicalConfig(patches=2, channels="grey", filtration="superlevel", construction="vertex"),
], ids=["rgb-H0H1-g4", "rgb-H1-g2", "grey-H0H1-g4", "grey-superlevel-vertex-g2"])
def test_patch_pis_are_the_pis_of_the_cropped_patches(cifar_test_images, config):
    images = cifar_test_images[:6]
    g = config.patches
    pi = PersistenceImageConfig(resolution=(8, 5))  # 8 birth columns, 5 persistence rows
    whole = CubicalConfig(**{**vars(config), "patches": 1})
    ours = cubical_persistence_images(images, config, pi)
    assert ours.shape == (6, whole.n_channels * len(config.homology_dimensions), 5 * g, 8 * g)
    for i in range(g):
        for j in range(g):
            reference = cubical_persistence_images(crop(images, g, i, j), whole, pi)
            assert np.array_equal(tile(ours, g, i, j), reference), (i, j)


def test_rectangular_images_and_the_chunked_batch():
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, size=(7, 12, 20, 3), dtype=np.uint8)  # 3×5-pixel patches
    config = CubicalConfig(patches=4)
    ours = cubical_persistence_images(images, config, PI, chunk=5)  # chunks cut through images
    for i in range(4):
        for j in range(4):
            reference = cubical_persistence_images(crop(images, 4, i, j), CubicalConfig(), PI)
            assert np.array_equal(tile(ours, 4, i, j), reference)


def test_tiles_sit_where_their_patches_sit():
    # grey 16×16, 2×2 grid of 8×8 patches: a dark pixel inside a bright ring in patch (0, 1)
    # only (top row, right column); every other patch is constant (no finite bar: empty PIs)
    image = np.zeros((16, 16), np.uint8)
    image[1:6, 9:14] = 255
    image[3, 11] = 0  # inside the ring: an H0 bar (0, 1) and an H1 bar (0, 1)
    patches = patch_images(image, 2)
    assert patches.shape == (4, 8, 8, 1)
    assert np.array_equal(patches[1, ..., 0], image[:8, 8:])  # index i·g + j = 0·2 + 1
    assert np.array_equal(patches[2, ..., 0], image[8:, :8])
    pis = cubical_persistence_images(image, CubicalConfig(patches=2, channels="grey"), PI)
    assert pis.shape == (1, 2, 16, 16)
    for dim in (0, 1):
        energy = [[tile(pis, 2, i, j)[0, dim].sum() for j in range(2)] for i in range(2)]
        assert energy[0][1] > 0 and energy[0][0] == energy[1][0] == energy[1][1] == 0, energy
        assert pis[0, dim, :8, 8:].max() == pis[0, dim].max()  # rows 0-7, columns 8-15


def test_uint8_divides_each_whole_tiled_map_by_its_maximum(cifar_test_images):
    images = cifar_test_images[:4]
    raw, u8 = compute_pis(images, PATCHED)
    assert np.array_equal(u8, to_uint8(raw))  # the same normalisation as every other mode
    per_map_max = raw.max(axis=(2, 3), keepdims=True)
    np.testing.assert_array_equal(u8, (raw / per_map_max * 255).astype(np.uint8))
    tile_maxima = np.array([[u8[:, :, i * 8:(i + 1) * 8, j * 8:(j + 1) * 8].max(axis=(2, 3))
                             for j in range(4)] for i in range(4)])  # (4, 4, N, K)
    assert (tile_maxima.max(axis=(0, 1)) == 255).all()
    assert (tile_maxima < 255).any()  # tiles are not normalised one by one


def test_sizes_that_do_not_split_are_refused():
    image = np.zeros((30, 32, 3), np.uint8)
    with pytest.raises(TGDError, match=r"patches=4: an image of 30×32 pixels .* multiples of 4"):
        compute_pis(image, PATCHED)
    with pytest.raises(TGDError, match="30×32 pixels"):
        patch_images(image, 4)


@pytest.mark.parametrize("bad, message", [
    (0, "patches must be >= 1, got 0"), (-2, "patches must be >= 1"),
    (2.0, "patches must be an integer, got 2.0"), (True, "patches must be an integer"),
    ("4", "patches must be an integer, got '4'"),
])
def test_bad_patch_counts_are_refused(bad, message):
    with pytest.raises(TGDError, match=message):
        CubicalConfig(patches=bad)
    with pytest.raises(TGDError, match=message):
        representation_from_dict({"mode": "cubical", "cubical": {"patches": bad}})
    assert CubicalConfig(patches=np.int64(3)).patches == 3
    assert type(CubicalConfig(patches=np.int64(3)).patches) is int


# --- consumers: diagrams, summarise, the transformer, `tgd pi`, the cache ----------------------


def test_diagrams_refuse_patches_and_summarise_pools_them_per_pi(cifar_test_images):
    image = cifar_test_images[0]
    with pytest.raises(TGDError, match="cubical diagrams are of whole images.*patch_images"):
        cubical_diagrams(image, CubicalConfig(patches=4))
    summary = summarise(image, PATCHED)
    assert [label for label, _, _ in summary.diagrams] == [
        f"{c} H{d}, 4×4 patches" for c in "RGB" for d in (0, 1)]
    assert summary.pi_raw.shape == (6, 32, 32)
    assert np.array_equal(summary.pi_raw, compute_pis(image, PATCHED)[0][0])
    per_patch = [cubical_diagrams(crop(image[None], 4, i, j), CubicalConfig())[0]
                 for i in range(4) for j in range(4)]
    for k, (_, _, pooled) in enumerate(summary.diagrams):
        channel, dim = divmod(k, 2)
        assert np.array_equal(pooled, np.vstack([p[channel][dim] for p in per_patch]))
    whole = summarise(image, CubicalPIConfig(image=PI))  # patches=1: as before
    assert [label for label, _, _ in whole.diagrams][:2] == ["R H0", "R H1"]
    assert np.array_equal(whole.diagrams[1][2], cubical_diagrams(image)[0][0][1])


def test_the_transformer_takes_patches(cifar_test_images):
    images = cifar_test_images[:3]
    est = CubicalPersistence(patches=4, output="images", pi=PI)
    assert est.config == CubicalConfig(patches=4)
    assert np.array_equal(est.fit_transform(images), compute_pis(images, PATCHED)[0])
    with pytest.raises(TGDError, match="cubical diagrams are of whole images"):
        CubicalPersistence(patches=2).fit_transform(images)


def test_tgd_pi_patches_flag(tmp_path, cifar_test_images, capsys):
    np.save(tmp_path / "im.npy", cifar_test_images[:5])
    args = ["pi", "--input", str(tmp_path / "im.npy"), "--mode", "cubical", "--pi-resolution",
            "8"]
    assert main([*args, "--patches", "4", "--out", str(tmp_path / "o.npz")]) == 0
    with np.load(tmp_path / "o.npz") as out:
        assert out["pi_uint8"].shape == (5, 6, 32, 32)
        assert np.array_equal(out["pi_uint8"], compute_pis(cifar_test_images[:5], PATCHED)[1])
        assert representation_from_dict(json.loads(str(out["config"]))) == PATCHED
    assert main([*args, "--patches", "3", "--out", str(tmp_path / "bad.npz")]) != 0
    assert "patches=3: an image of 32×32 pixels" in capsys.readouterr().err


def test_the_pi_cache_keys_and_stores_patch_pis(tmp_path, cifar_test_images):
    images = cifar_test_images[:10]
    pis = cached_pis(images, PATCHED, "cifar10", "test", cache_dir=tmp_path)
    assert np.array_equal(pis, compute_pis(images, PATCHED)[1])
    entry = PICache.for_images(images, PATCHED, "cifar10", "test", cache_dir=tmp_path)
    meta = json.loads((entry.root / "meta.json").read_text())
    assert meta["representation"]["cubical"]["patches"] == 4 and meta["shape"] == [6, 32, 32]
    whole = PICache.for_images(images, CubicalPIConfig(image=PI), "cifar10", "test",
                               cache_dir=tmp_path)
    assert whole.root != entry.root and whole.shape == (6, 8, 8)


# --- PI networks read the tiled maps -----------------------------------------------------------


def test_a_wrn_pi_teacher_reads_the_tiled_maps(cifar_test_images):
    from tgd_core.nets.models import build_model
    from tgd_core.nets.network import Network
    from tgd_core.training.data import pi_normalization

    images = cifar_test_images[:4]
    u8 = compute_pis(images, PATCHED)[1]
    normalization = pi_normalization(u8)  # per map, over every tile: what training uses
    assert normalization.channels == 6
    model = build_model("wrn16_3", in_channels=n_maps(PATCHED)).eval()
    net = Network(model, "pi", normalization, PATCHED.to_dict())  # as a checkpoint records it
    assert net.representation == PATCHED
    stacks = net.input_for(images)
    assert stacks.shape == (4, 32, 32, 6)
    from tgd_core.data.normalization import to_model_input

    with torch.no_grad():
        logits = model(to_model_input(stacks, normalization))
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()


def test_a_training_config_takes_a_patch_representation():
    from tgd_core.training.config import TrainConfig

    cfg = TrainConfig.build(student="wrn16_3", student_input="pi", pi=PATCHED.to_dict())
    assert representation_from_dict(cfg.pi) == PATCHED
    with pytest.raises(TGDError, match="patches must be >= 1"):
        TrainConfig.build(student_input="pi", pi={"mode": "cubical", "cubical": {"patches": 0}})


def test_widths_that_do_not_split_are_refused_too():
    image = np.zeros((32, 30, 3), np.uint8)  # H splits into 4, W does not
    with pytest.raises(TGDError, match=r"patches=4: an image of 32×30 pixels"):
        compute_pis(image, PATCHED)
    with pytest.raises(TGDError, match="32×30 pixels"):
        patch_images(image, 4)


def test_every_patch_count_has_its_own_cache_key():
    # only patches=1 may share the key of configs saved before the field existed
    keys = [representation_key(CubicalPIConfig(CubicalConfig(patches=g))) for g in range(1, 9)]
    assert len(set(keys)) == len(keys)
    for g in range(2, 9):
        assert CubicalConfig(patches=g).to_dict()["patches"] == g


def test_maps_per_image_follow_channels_and_dimensions(cifar_test_images):
    for cubical in (CubicalConfig(channels="grey", homology_dimensions=(1,)),
                    CubicalConfig(channels="grey"), CubicalConfig(homology_dimensions=(0,))):
        rep = CubicalPIConfig(cubical, PI)
        assert n_maps(rep) == compute_pis(cifar_test_images[:1], rep)[0].shape[1]


def test_summarise_labels_and_extent_with_one_homology_dimension(cifar_test_images):
    image = cifar_test_images[0]
    pi = PersistenceImageConfig(resolution=(8, 8), birth_range=(-0.25, 1.0),
                                pers_range=(0.0, 0.5))
    rep = CubicalPIConfig(CubicalConfig(channels="grey", homology_dimensions=(1,)), pi)
    summary = summarise(image, rep)
    assert summary.extent == (-0.25, 1.0, 0.0, 0.5)  # the PI's own ranges
    (label, channel, dgm), = summary.diagrams
    assert (label, channel) == ("grey H1", "grey")
    np.testing.assert_array_equal(
        dgm, cubical_diagrams(image, CubicalConfig(channels="grey"))[0][0][1])


@pytest.mark.parametrize("rep, tolerance", [
    (PaperPIConfig(), 5e-5),
    (CubicalPIConfig(CubicalConfig(channels="grey"), PersistenceImageConfig(
        resolution=(40, 40), sigma=0.01, weight="linear")), 1.5e-3),
    (CubicalPIConfig(CubicalConfig(channels="grey"), PersistenceImageConfig(
        resolution=(40, 40), sigma=0.01, weight="linear", integrate=False)), 1.5e-3),
], ids=["paper", "cubical-integrated", "cubical-sampled"])
def test_the_pi_axes_put_each_pixel_where_its_points_are(rep, tolerance):
    """A PI's centroid over the pixel centres of ``summary.axes`` is its diagram's centroid
    weighted by persistence (each point adds a symmetric Gaussian of mass ∝ persistence, almost
    all inside the window here): labelling the pixels by the window's ends instead, as the
    app did, is off by up to half a pixel (paper: ~1.3e-3 birth; cubical: ~9e-3 persistence).
    Paper mode's pixels end where persim's do, ``maxBD / ny`` past maxBD."""
    rng = np.random.default_rng(0)
    paper = isinstance(rep, PaperPIConfig)
    image = rng.integers(15, 60, (32, 32, 3)) if paper else rng.integers(60, 190, (32, 32, 3))
    summary = summarise(image.astype(np.uint8), rep)
    if paper:
        assert summary.extent == (0.0, 0.3 + 0.3 / 50, 0.0, 0.3 + 0.3 / 50)
    births, persistences = summary.axes.births, summary.axes.persistences
    assert summary.pi_raw.shape[1:] == (len(persistences), len(births))
    for (label, _, dgm), pi in zip(summary.diagrams, summary.pi_raw, strict=True):
        dgm = dgm[np.isfinite(dgm).all(axis=1)]
        pers = dgm[:, 1] - dgm[:, 0]
        if paper:
            pers = pers * (pers >= rep.threshold)  # the authors' threshold drops short bars
        expected = (pers @ dgm[:, 0] / pers.sum(), pers @ pers / pers.sum())
        centroid = (pi.sum(0) @ births / pi.sum(), pi.sum(1) @ persistences / pi.sum())
        np.testing.assert_allclose(centroid, expected, atol=tolerance, err_msg=label)
