"""Engine-side inspection: resizing, corruption, probabilities, sweeps and similarity maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.zoo_helpers import make_zoo
from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import CIFAR10_PI, to_model_input
from tgd_core.distill import losses
from tgd_core.evaluation import inspection
from tgd_core.evaluation.metrics import model_input_transform, predict_logits
from tgd_core.nets import model_zoo
from tgd_core.nets.checkpoints import load_checkpoint, save_checkpoint
from tgd_core.nets.models import build_model
from tgd_core.nets.network import Network, input_transform
from tgd_core.topology.representation import CubicalPIConfig, compute_pis, n_maps


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    """T1 (raw), T2 (PI) and a student, random WRN16-1s."""
    folder = make_zoo(tmp_path_factory.mktemp("zoo"))
    entries = model_zoo.discover(folder, folder / "none")
    return {e.role: model_zoo.load_network(e) for e in entries}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


def test_to_cifar_size_converts_and_resizes():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (64, 48), dtype=np.uint8)
    out = inspection.to_cifar_size(grey)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 2]).all()
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    assert (inspection.to_cifar_size(rgba) == rgba[..., :3]).all()
    flat = np.full((96, 96, 3), 77, np.uint8)
    assert (inspection.to_cifar_size(flat) == 77).all()


def test_corrupt_image(images):
    img = images[0]
    assert inspection.corrupt_image(img, "gaussian_noise", 0) is img
    noisy = inspection.corrupt_image(img, "gaussian_noise", 5, seed=3)
    assert noisy.shape == img.shape and (noisy != img).any()
    assert (noisy == inspection.corrupt_image(img, "gaussian_noise", 5, seed=3)).all()
    with pytest.raises(TGDError, match="severity"):
        inspection.corrupt_image(img, "contrast", 6)


def test_network_inputs_by_kind(nets, images):
    assert nets["teacher1"].input_for(images) is images
    pi = nets["teacher2"].input_for(images[:2])
    assert pi.shape == (2, 50, 50, 6) and pi.dtype == np.uint8
    with pytest.raises(TGDError, match="input kind"):
        input_transform("depth")


@pytest.fixture(scope="module")
def cubical_teacher(tmp_path_factory):
    """A tiny PI network trained (here: saved) on cubical PIs, which have 6 channels in RGB
    like paper-mode PIs, so feeding it paper PIs would go unnoticed by the shapes."""
    rep = CubicalPIConfig()
    assert n_maps(rep) == 6
    path = save_checkpoint(tmp_path_factory.mktemp("cubical") / "t2.pt",
                           build_model("wrn16_1", in_channels=n_maps(rep)), input_kind="pi",
                           normalization=CIFAR10_PI, config={"pi": rep.to_dict()},
                           git_commit="test")
    return Network.from_checkpoint(load_checkpoint(path)), rep


def test_a_cubical_pi_network_is_fed_its_own_pis(cubical_teacher, images):
    net, rep = cubical_teacher
    assert net.representation == rep
    fed = []
    hook = net.model.register_forward_pre_hook(lambda module, args: fed.append(args[0]))
    try:
        probs = inspection.predict_probabilities({"t2": net}, images[:3])["t2"]
        inspection.similarity_maps(images[:3], t2=net)
    finally:
        hook.remove()
    cubical = compute_pis(images[:3], rep)[1].transpose(0, 2, 3, 1)
    expected = to_model_input(cubical, CIFAR10_PI)
    paper = to_model_input(compute_pis(images[:3])[1].transpose(0, 2, 3, 1), CIFAR10_PI)
    assert len(fed) == 2 and all(torch.equal(x, expected) for x in fed)
    assert fed[0].shape != paper.shape  # 32×32 cubical PIs, not 50×50 paper ones
    with torch.no_grad():
        direct = torch.softmax(net.model(expected).double(), 1).numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-6)
    evaluated = predict_logits(net.model, images[:3], net.normalization,
                               transform=model_input_transform("pi", {"pi": rep.to_dict()}))
    np.testing.assert_allclose(torch.softmax(evaluated.double(), 1).numpy(), probs, rtol=1e-6)


def test_predict_probabilities_raw_and_pi(nets, images):
    probs = inspection.predict_probabilities({"t1": nets["teacher1"], "t2": nets["teacher2"]},
                                             images[:3])
    assert set(probs) == {"t1", "t2"}
    for p in probs.values():
        assert p.shape == (3, 10) and np.allclose(p.sum(1), 1)
    assert not np.allclose(probs["t1"], probs["t2"])


def test_severity_sweep_rows_reliability_and_progress(nets, images):
    labels = np.arange(len(images)) % 10
    calls = []
    result = inspection.severity_sweep({"s": nets["student"], "t2": nets["teacher2"]}, images,
                                       labels, "contrast", (0, 5),
                                       progress=lambda f, m: calls.append(f))
    assert [(r["model"], r["severity"]) for r in result.rows] == \
        [("s", 0), ("t2", 0), ("s", 5), ("t2", 5)]
    assert all(r["n"] == 6 and 0 <= r["accuracy"] <= 100 for r in result.rows)
    assert sum(b.count for b in result.reliability[("t2", 5)]) == 6
    assert result.accuracy("s") == [(0, result.rows[0]["accuracy"]),
                                    (5, result.rows[2]["accuracy"])]
    assert calls == sorted(calls) and calls[0] == 0 and calls[-1] == 1.0 and len(calls) == 5
    with pytest.raises(TGDError, match="unknown corruption"):
        inspection.severity_sweep({"s": nets["student"]}, images, labels, "rain")
    with pytest.raises(TGDError, match="labels"):
        inspection.severity_sweep({"s": nets["student"]}, images, labels[:2], "contrast")


def _g(net, x):
    with torch.no_grad():
        _, feats = net.model(net.normalization.apply(x), return_features=True)
    return [losses.similarity_matrix(f) for f in feats]


def test_similarity_maps_match_the_tgd_formula(nets, images):
    alpha = 0.7
    out = inspection.similarity_maps(images, nets["teacher1"], nets["teacher2"], nets["student"],
                                     alpha)
    assert list(out.maps) == ["T1", "T2", "merged", "student"] and out.target == "merged"
    assert all(len(m) == 3 and all(g.shape == (6, 6) for g in m) for m in out.maps.values())
    assert np.allclose(np.linalg.norm(out.maps["student"][1], axis=1), 1)
    raw = torch.as_tensor(images).permute(0, 3, 1, 2).float() / 255
    pi = torch.as_tensor(nets["teacher2"].input_for(images)).permute(0, 3, 1, 2).float() / 255
    g1, g2, gs = _g(nets["teacher1"], raw), _g(nets["teacher2"], pi), _g(nets["student"], raw)
    for layer in range(3):
        merged = losses.row_normalise(alpha * g1[layer] + (1 - alpha) * g2[layer])
        assert np.allclose(out.maps["merged"][layer], merged.numpy(), atol=1e-5)
        expected = (losses.row_normalise(gs[layer]) - merged).pow(2).mean()
        assert out.losses[layer] == pytest.approx(float(expected), rel=1e-4)


def test_similarity_maps_with_missing_networks(nets, images):
    only_student = inspection.similarity_maps(images, student=nets["student"])
    assert list(only_student.maps) == ["student"] and only_student.losses is None
    one_teacher = inspection.similarity_maps(images, t1=nets["teacher1"],
                                             student=nets["student"])
    assert one_teacher.target == "T1" and "merged" not in one_teacher.maps
    with pytest.raises(TGDError, match="at least 2 images"):
        inspection.similarity_maps(images[:1], student=nets["student"])
    with pytest.raises(TGDError, match="alpha"):
        inspection.similarity_maps(images, student=nets["student"], alpha=1.5)


def test_dataset_sample(cifar_test_images):
    a, la = inspection.dataset_sample(5, seed=1)
    b, lb = inspection.dataset_sample(5, seed=1)
    assert a.shape == (5, 32, 32, 3) and (a == b).all() and (la == lb).all()
    with pytest.raises(TGDError, match="sample size"):
        inspection.dataset_sample(0)
