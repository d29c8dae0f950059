"""On-the-fly PIs: the PI teacher's input is the PI of the very augmented view the student sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tgd_core.core.errors import TGDError
from tgd_core.topology.representation import compute_pis, representation_from_dict
from tgd_core.training import TrainConfig, run_training
from tgd_core.training.data import TrainData

pytestmark = pytest.mark.usefixtures("cifar_test_images")


@pytest.mark.parametrize("pi", [{"mode": "paper"},
                                {"mode": "cubical", "cubical": {"channels": "grey"},
                                 "image": {"resolution": [16, 16]}}])
def test_on_the_fly_pi_equals_the_engines_pi_of_the_augmented_view(tmp_path, pi):
    cfg = TrainConfig.build(train_subset=64, test_subset=16, batch_size=16, augment=True,
                            pi_on_the_fly=True, pi=pi, out_dir=str(tmp_path))
    data = TrainData(cfg, {"raw", "pi"}, torch.device("cpu"))
    first = next(data.train_batches(epoch=3))
    idx, inputs = first.idx, first.inputs
    views = np.round(inputs["raw"].numpy() * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    original = data.train.raw[idx].numpy().transpose(0, 2, 3, 1)
    assert not np.array_equal(views, original)  # the views really are augmented
    expected = compute_pis(views, representation_from_dict(pi))[1]
    np.testing.assert_array_equal(np.round(inputs["pi"].numpy() * 255).astype(np.uint8),
                                  expected)


def test_pi_networks_train_with_augmentation_on_the_fly(tmp_path):
    with pytest.raises(TGDError, match="on-the-fly"):
        run_training(TrainConfig.build(student_input="pi", augment=True, train_subset=32,
                                       out_dir=str(tmp_path / "refused")))
    cfg = TrainConfig.build(student="wrn16_1", student_input="pi", augment=True,
                            pi_on_the_fly=True, train_subset=64, test_subset=32, epochs=1,
                            batch_size=32, out_dir=str(tmp_path / "t2"))
    result = run_training(cfg, progress=False)
    assert result["last"]["epoch"] == 1
    t1 = TrainConfig.build(student="wrn16_1", train_subset=64, test_subset=32, epochs=1,
                           batch_size=32, out_dir=str(tmp_path / "t1"))
    run_training(t1, progress=False)
    tgd = TrainConfig.build(method="tgd", augment=True, pi_on_the_fly=True, train_subset=64,
                            test_subset=32, epochs=1, batch_size=32,
                            teachers={"t1": str(tmp_path / "t1/latest.pt"),
                                      "t2": str(tmp_path / "t2/latest.pt")},
                            out_dir=str(tmp_path / "tgd"))
    assert run_training(tgd, progress=False)["last"]["epoch"] == 1


def test_a_pi_teacher_is_fed_its_own_representation(tmp_path):
    cubical = {"mode": "cubical", "image": {"resolution": [16, 16]}}
    t2 = TrainConfig.build(student="wrn16_1", student_input="pi", pi=cubical, train_subset=32,
                           test_subset=16, epochs=1, batch_size=16, out_dir=str(tmp_path / "t2"))
    run_training(t2, progress=False)
    kd = TrainConfig.build(method="kd", teachers={"t1": str(tmp_path / "t2/latest.pt")},
                           train_subset=32, test_subset=16, epochs=1, batch_size=16,
                           out_dir=str(tmp_path / "kd"))  # pi defaults to paper mode
    with pytest.raises(TGDError, match="was trained on PIs"):
        run_training(kd, progress=False)
    ok = TrainConfig.build(**{**kd.model_dump(), "pi": cubical, "out_dir": str(tmp_path / "ok")})
    assert run_training(ok, progress=False)["last"]["epoch"] == 1


def test_prefetch_yields_the_same_items_and_surfaces_errors():
    from tgd_core.training.data import prefetch

    assert list(prefetch(iter(range(50)), depth=2)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("bad batch")

    stream = prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(ValueError, match="bad batch"):
        next(stream)
    early = prefetch(iter(range(1000)))  # closed early: the producer stops, nothing hangs
    assert next(early) == 0
    early.close()


def test_prefetched_on_the_fly_batches_equal_the_direct_ones(tmp_path):
    from tgd_core.training.data import prefetch

    cfg = TrainConfig.build(train_subset=64, test_subset=16, batch_size=16, augment=True,
                            pi_on_the_fly=True, out_dir=str(tmp_path))
    data = TrainData(cfg, {"raw", "pi"}, torch.device("cpu"))
    for a, b in zip(data.train_batches(1), prefetch(data.train_batches(1)), strict=True):
        assert a.step == b.step and torch.equal(a.idx, b.idx)
        assert all(torch.equal(a.inputs[k], b.inputs[k]) for k in ("raw", "pi"))
