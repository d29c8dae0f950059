"""Evaluation metrics on hand-made cases, batched inference, sweeps, the authors' accuracies
and the ``tgd evaluate`` CLI."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from official_reference import OFFICIAL_ACCURACY, TGD_CHECKPOINT, cifar10_split, official

from tgd_core import cli
from tgd_core.core.errors import TGDError
from tgd_core.data.corruptions import add_gaussian_noise, corrupt
from tgd_core.data.normalization import CIFAR10_RAW
from tgd_core.evaluation.metrics import (
    evaluate_logits,
    evaluate_model,
    expected_calibration_error,
    predict_logits,
    reliability_bins,
    robustness_sweep,
    write_table,
)
from tgd_core.evaluation.sweep import Condition, conditions
from tgd_core.nets.checkpoints import load_checkpoint, save_checkpoint
from tgd_core.nets.models import build_model


def test_ece_single_bin_by_hand() -> None:
    # four predictions at confidence 0.9, three right: |0.75 − 0.9| = 0.15
    bins = reliability_bins([0.9] * 4, [1, 1, 1, 0])
    assert expected_calibration_error(bins) == pytest.approx(0.15)
    (full,) = [b for b in bins if b.count]
    assert (full.lower, full.upper) == pytest.approx((13 / 15, 14 / 15))
    assert (full.confidence, full.accuracy, full.count) == pytest.approx((0.9, 0.75, 4))


def test_ece_several_bins_by_hand() -> None:
    # bins: {0.25: wrong} → 1/4·0.25; {0.55, 0.55: one right} → 2/4·0.05; {0.95: right} → 1/4·0.05
    bins = reliability_bins([0.25, 0.55, 0.55, 0.95], [0, 1, 0, 1])
    assert expected_calibration_error(bins) == pytest.approx(0.0625 + 0.025 + 0.0125)
    assert [b.count for b in bins] == [0, 0, 0, 1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1]
    assert len(bins) == 15 and bins[0].lower == 0 and bins[-1].upper == 1
    assert bins[0].confidence is None and bins[0].accuracy is None


def test_bins_are_right_closed() -> None:
    edges = np.linspace(0, 1, 16)
    bins = reliability_bins([edges[1], 1.0, edges[1] + 1e-9], [1, 1, 1])
    assert bins[0].count == 1 and bins[1].count == 1 and bins[14].count == 1


def test_non_finite_logits_are_never_right() -> None:
    """argmax takes NaN for the maximum: a diverged network's all-NaN logits once scored
    class 0 right (10 % on CIFAR-10), and a NaN beside the true class 100 %."""
    nan = float("nan")
    logits = torch.tensor([[nan, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, nan, 1.0]])
    result = evaluate_logits(logits, np.array([0, 2, 1]))
    assert result.accuracy == pytest.approx(100 / 3) and math.isnan(result.nll)
    assert evaluate_logits(torch.full((10, 10), nan), np.arange(10)).accuracy == 0


def test_calibrated_predictions_have_zero_ece() -> None:
    assert expected_calibration_error(reliability_bins([0.75] * 8, [1, 1, 0, 1] * 2)) == 0


def test_evaluate_logits_by_hand() -> None:
    ln3 = math.log(3)  # softmax([ln 3, 0]) = (0.75, 0.25)
    logits = torch.tensor([[ln3, 0.0], [ln3, 0.0], [ln3, 0.0], [0.0, ln3]])
    result = evaluate_logits(logits, np.array([0, 0, 1, 1]))
    assert result.accuracy == 75.0 and result.n == 4
    assert result.nll == pytest.approx(-(3 * math.log(0.75) + math.log(0.25)) / 4)
    assert result.ece == pytest.approx(0.0, abs=1e-7)  # all at confidence 0.75, 75 % right
    overconfident = evaluate_logits(torch.tensor([[10.0, 0.0], [10.0, 0.0]]), np.array([0, 1]))
    conf = 1 / (1 + math.exp(-10))
    assert overconfident.ece == pytest.approx(conf - 0.5)
    assert overconfident.summary() == {"accuracy": 50.0, "nll": overconfident.nll,
                                       "ece": overconfident.ece, "n": 2}


def test_nll_and_confidence_are_computed_in_float64() -> None:
    """From float32 logits (0, 20): p = 1/(1 + e⁻²⁰), 1 − p ≈ 2.06e-9, which float32 rounds
    away (NLL 0, confidence 1); NLL = log(1 + e⁻²⁰) and ECE = 1 − p for a right prediction."""
    result = evaluate_logits(torch.tensor([[0.0, 20.0]]), np.array([1]))
    tail = math.exp(-20) / (1 + math.exp(-20))
    assert result.nll == pytest.approx(math.log1p(math.exp(-20)), rel=1e-6)
    (full,) = [b for b in result.reliability if b.count]
    assert 1 - full.confidence == pytest.approx(tail, rel=1e-6)
    assert result.ece == pytest.approx(tail, rel=1e-6)


def test_summary_rounds_accuracy_to_two_decimals() -> None:
    result = evaluate_logits(torch.tensor([[1.0, 0.0]] * 3), np.array([0, 1, 1]))
    assert result.accuracy == pytest.approx(100 / 3)
    assert result.summary()["accuracy"] == 33.33 and result.to_dict()["accuracy"] == 33.33


def test_metric_argument_errors() -> None:
    with pytest.raises(TGDError):
        reliability_bins([0.5, 1.5], [1, 0])
    with pytest.raises(TGDError):
        reliability_bins([0.5], [1, 0])
    with pytest.raises(TGDError):
        reliability_bins([-0.1, 0.5], [1, 0])
    with pytest.raises(TGDError):
        evaluate_logits(torch.zeros(3, 10), np.zeros(2))


def test_predict_logits_batching_mode_and_threads() -> None:
    torch.manual_seed(0)
    net = build_model("wrn16_1")
    net.train()
    images = np.random.default_rng(0).integers(0, 256, (23, 32, 32, 3), dtype=np.uint8)
    threads = torch.get_num_threads()
    a = predict_logits(net, images, CIFAR10_RAW, batch_size=5, num_threads=1)
    b = predict_logits(net, images, CIFAR10_RAW, batch_size=100, progress=True)
    assert a.shape == (23, 10) and torch.allclose(a, b, atol=1e-5)
    assert net.training and torch.get_num_threads() == threads
    net.eval()
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - torch.tensor(
        CIFAR10_RAW.mean).view(1, 3, 1, 1)) / torch.tensor(CIFAR10_RAW.std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(a, net(x), atol=1e-5)
    one = predict_logits(net, images[:4], CIFAR10_RAW, batch_size=1)
    assert one.shape == (4, 10) and torch.allclose(one, a[:4], atol=1e-5)  # last image too
    with pytest.raises(TGDError):
        predict_logits(net, images, CIFAR10_RAW, batch_size=0)


def test_sweep_rows_and_tables(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("wrn16_1")
    images = np.random.default_rng(1).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(12) % 10
    rows = robustness_sweep(net, images, labels, CIFAR10_RAW, corruptions=("contrast",
                            "impulse_noise"), severities=(1, 5), noise_sigmas=(0.1,))
    assert [(r["corruption"], r["severity"], r["sigma"]) for r in rows] == [
        ("clean", 0, None), ("contrast", 1, None), ("contrast", 5, None),
        ("impulse_noise", 1, None), ("impulse_noise", 5, None),
        ("gaussian_noise_sigma", None, 0.1)]
    assert all(r["n"] == 12 and 0 <= r["accuracy"] <= 100 for r in rows)
    assert json.loads(write_table(rows, tmp_path / "t.json").read_text()) == rows
    with open(write_table(rows, tmp_path / "t.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["corruption"] for r in table] == [r["corruption"] for r in rows]
    assert float(table[2]["ece"]) == pytest.approx(rows[2]["ece"])
    with pytest.raises(TGDError, match=".csv or .json"):
        write_table(rows, tmp_path / "t.txt")


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n == TGD_CHECKPOINT.name else pytest.mark.slow)
    for n in sorted(OFFICIAL_ACCURACY)])
def test_authors_accuracy_on_full_test_batch(name: str) -> None:
    images, labels = cifar10_split("test")
    ck = load_checkpoint(official(name))
    result = evaluate_model(ck.build(), images, labels, ck.normalization, batch_size=1000)
    assert result.n == 10_000
    assert round(result.accuracy * 100) == round(OFFICIAL_ACCURACY[name][1] * 100)
    assert result.summary()["accuracy"] == OFFICIAL_ACCURACY[name][1]
    assert 0 < result.ece < 0.5 and 0 < result.nll < 2


def test_cli_json_on_authors_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    path = official(TGD_CHECKPOINT.name)
    images, labels = cifar10_split("test")
    assert cli.main(["evaluate", "--checkpoint", str(path), "--limit", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"accuracy", "nll", "ece", "n"} and out["n"] == 1000
    ck = load_checkpoint(path)
    direct = evaluate_model(ck.build(), images[:1000], labels[:1000], ck.normalization)
    assert out["accuracy"] == round(direct.accuracy, 2) == 77.4
    assert out["nll"] == pytest.approx(direct.nll) and out["ece"] == pytest.approx(direct.ece)


def test_cli_corruption_and_sweep(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = str(official(TGD_CHECKPOINT.name))
    cifar10_split("test")
    args = ["evaluate", "--checkpoint", path, "--limit", "200", "--json"]
    assert cli.main([*args, "--corruption", "contrast", "--severity", "5"]) == 0
    contrast = json.loads(capsys.readouterr().out)
    assert cli.main([*args, "--noise-sigma", "0.1", "--reliability"]) == 0
    noisy = json.loads(capsys.readouterr().out)
    assert cli.main(args) == 0
    clean = json.loads(capsys.readouterr().out)
    assert contrast["accuracy"] < clean["accuracy"] and noisy["accuracy"] < clean["accuracy"]
    assert sum(b["count"] for b in noisy["reliability"]) == 200
    table = tmp_path / "sweep.csv"
    assert cli.main(["evaluate", "--checkpoint", path, "--limit", "20", "--sweep",
                     "--sweep-corruptions", "method", "--output", str(table)]) == 0
    assert "jpeg_compression" in capsys.readouterr().out
    with open(table) as f:
        assert len(list(csv.DictReader(f))) == 1 + 7 * 5


@pytest.mark.parametrize("argv, message", [
    (["--corruption", "contrast"], "needs --severity"),
    (["--severity", "2"], "needs --corruption"),
    (["--output", "x.csv"], "need --sweep"),
    (["--limit", "0"], "--limit"),
])
def test_cli_argument_errors(tmp_path: Path, capsys, argv: list[str], message: str) -> None:
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "x.pt"), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_bad_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "broken.pth.tar"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    assert cli.main(["evaluate", "--checkpoint", str(bad), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("tgd") and "error: " in captured.err
    assert "evaluate" in captured.err and str(bad) in captured.err


def test_conditions_builder_order_names_and_labels() -> None:
    built = conditions(("contrast", "impulse_noise"), (1, 5), (0.1, 1))
    assert [(c.name, c.severity, c.sigma) for c in built] == [
        ("clean", 0, None), ("contrast", 1, None), ("contrast", 5, None),
        ("impulse_noise", 1, None), ("impulse_noise", 5, None),
        ("gaussian_noise_sigma", None, 0.1), ("gaussian_noise_sigma", None, 1.0)]
    assert [c.label for c in built] == ["clean", "contrast 1", "contrast 5", "impulse_noise 1",
                                        "impulse_noise 5", "noise σ=0.1", "noise σ=1"]
    assert conditions(("contrast",), (2,), clean=False) == [Condition("contrast", 2, None)]
    assert conditions() == [Condition("clean", 0, None)]
    row = built[-1].row({"accuracy": 50.0})
    assert row == {"corruption": "gaussian_noise_sigma", "severity": None, "sigma": 1.0,
                   "accuracy": 50.0}
    assert Condition.from_row(row) == built[-1]
    images = np.random.default_rng(3).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert built[0].apply(images) is images
    np.testing.assert_array_equal(built[2].apply(images, seed=4),
                                  corrupt(images, "contrast", 5, seed=4))
    np.testing.assert_array_equal(built[5].apply(images, seed=4),
                                  add_gaussian_noise(images, 0.1, seed=4))


def test_evaluate_job_and_recipe_use_the_same_conditions(tmp_path) -> None:
    from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES
    from tgd_core.experiments.recipe import EvalSpec
    from tgd_core.jobs.runners import EvaluateJob

    (tmp_path / "m.pt").write_bytes(b"")  # a job's checkpoint must exist when submitted
    model = str(tmp_path / "m.pt")
    job = EvaluateJob(checkpoint=model, sweep=True, sweep_sigmas=[0.2])
    assert job.conditions() == conditions(CORRUPTIONS, SEVERITIES, (0.2,))
    assert len(job.conditions()) == 1 + len(CORRUPTIONS) * 5 + 1
    assert EvaluateJob(checkpoint=model, corruption="contrast", severity=3).conditions() == [
        Condition("contrast", 3, None)]
    assert EvaluateJob(checkpoint=model, noise_sigma=0.1).conditions() == [
        Condition("gaussian_noise_sigma", None, 0.1)]
    assert EvaluateJob(checkpoint=model).conditions() == [Condition("clean", 0, None)]
    spec = EvalSpec(corruptions=["contrast"], severities=[1, 5], noise_sigmas=[0.1])
    assert spec.conditions() == [Condition("clean", 0, None), Condition("contrast", 1, None),
                                 Condition("contrast", 5, None),
                                 Condition("gaussian_noise_sigma", None, 0.1)]


def test_sweep_cache_reuses_corruptions_of_the_same_images_only() -> None:
    torch.manual_seed(0)
    net = build_model("wrn16_1")
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)  # same size, other images
    labels = np.arange(8) % 10
    kw = dict(corruptions=("gaussian_noise",), severities=(3,), include_clean=False)
    cache: dict = {}
    first = robustness_sweep(net, a, labels, CIFAR10_RAW, corrupted_cache=cache, **kw)
    assert len(cache) == 1
    again = robustness_sweep(net, a.copy(), labels, CIFAR10_RAW, corrupted_cache=cache, **kw)
    assert again == first and len(cache) == 1  # same pixels: served from the cache
    other = robustness_sweep(net, b, labels, CIFAR10_RAW, corrupted_cache=cache, **kw)
    assert len(cache) == 2
    assert other == robustness_sweep(net, b, labels, CIFAR10_RAW, **kw)


def test_sweep_rows_are_the_metrics_of_the_corrupted_images_at_the_seed() -> None:
    """Each row is evaluate_model on corrupt(images, name, severity, seed) (or the noised
    images), with and without the cache; the cache tells seeds apart."""
    torch.manual_seed(0)
    net = build_model("wrn16_1")
    images = np.random.default_rng(3).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(6)
    kw = dict(corruptions=("gaussian_noise",), severities=(5,), noise_sigmas=(0.2,),
              include_clean=False, num_threads=1)

    def expected(seed: int) -> list[dict]:
        noisy = (corrupt(images, "gaussian_noise", 5, seed=seed),
                 add_gaussian_noise(images, 0.2, seed=seed))
        return [evaluate_model(net, x, labels, CIFAR10_RAW, num_threads=1).summary()
                for x in noisy]

    def metrics(rows: list[dict]) -> list[dict]:
        return [{k: r[k] for k in ("accuracy", "nll", "ece", "n")} for r in rows]

    cache: dict = {}
    by_seed = {seed: expected(seed) for seed in (3, 4)}
    for seed in (3, 4):
        assert metrics(robustness_sweep(net, images, labels, CIFAR10_RAW, seed=seed,
                                        **kw)) == by_seed[seed]
        assert metrics(robustness_sweep(net, images, labels, CIFAR10_RAW, seed=seed,
                                        corrupted_cache=cache, **kw)) == by_seed[seed]
    assert by_seed[3] != by_seed[4] and len(cache) == 4


@pytest.mark.parametrize("device", [
    "cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                         reason="no CUDA device"))])
def test_uint8_images_normalised_on_the_device_equal_the_cpu_conversion(device) -> None:
    """Off the CPU, evaluation sends uint8 bytes and scales and normalises them there: every
    one of the 256 levels in every channel gives the CPU's float32 bits (ToTensor + Normalize
    as torchvision computes them)."""
    from tgd_core.data.normalization import _unit_batch_on, to_model_input, to_unit_batch

    levels = np.arange(256, dtype=np.uint8)
    images = np.stack([np.roll(levels, k).reshape(16, 16) for k in range(3)], -1)[None]
    images = np.concatenate([images, images[:, ::-1]])  # 2×16×16×3
    expected = torch.from_numpy(to_unit_batch(images))
    assert torch.equal(_unit_batch_on(images, torch.device(device)).cpu(), expected)
    want = CIFAR10_RAW.apply(expected)
    got = to_model_input(images, CIFAR10_RAW, device)
    assert got.device.type == device and torch.equal(got.cpu(), want)
    assert torch.equal(to_model_input(images, CIFAR10_RAW), want)


def test_a_pool_corrupts_a_sweep_as_one_process_does_bit_for_bit() -> None:
    """applied(): two worker processes make each condition's images exactly as this process
    does, in the sweep's order (clean passed through, noise, corruptions whose draws differ),
    and evaluate_conditions with workers gives the same rows and fills the cache once."""
    import multiprocessing

    from tgd_core.evaluation.metrics import evaluate_conditions
    from tgd_core.evaluation.sweep import applied

    images = np.random.default_rng(5).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    sweep = conditions(("glass_blur", "impulse_noise", "spatter"), (2, 5), (0.1,))
    here = list(applied(sweep, images, seed=7, workers=1))
    pooled = list(applied(sweep, images, seed=7, workers=2))
    assert [c for c, _ in pooled] == sweep == [c for c, _ in here]
    assert pooled[0][1] is images  # clean: the images themselves, not a copy
    for (condition, a), (_, b) in zip(here, pooled, strict=True):
        np.testing.assert_array_equal(a, b, err_msg=condition.label)
    assert not multiprocessing.active_children()  # the pool is gone

    torch.manual_seed(0)
    net, labels = build_model("wrn16_1"), np.arange(12) % 10
    cache: dict = {}
    rows = evaluate_conditions(net, images, labels, CIFAR10_RAW, sweep + sweep[1:3], seed=7,
                               corrupted_cache=cache, workers=2, num_threads=1)
    assert rows == evaluate_conditions(net, images, labels, CIFAR10_RAW, sweep + sweep[1:3],
                                       seed=7, workers=1, num_threads=1)
    assert rows[-2:] == rows[1:3] and len(cache) == len(sweep)


def test_a_pool_stops_when_its_sweep_is_left_and_names_bad_worker_counts() -> None:
    """Leaving the iterator after one condition ends the workers; a worker's error reaches the
    caller; workers < 1 is refused; a small sweep stays in this process."""
    import multiprocessing

    from tgd_core.evaluation.sweep import PARALLEL_MIN_IMAGES, _worker_count, applied

    images = np.zeros((4, 8, 8, 3), np.uint8)
    sweep = conditions(("contrast", "fog"), (1, 2, 3))
    walk = applied(sweep, images, workers=2)
    assert next(walk)[0] == sweep[0]
    assert len(multiprocessing.active_children()) == 2  # the pool, corrupting ahead
    walk.close()
    assert not multiprocessing.active_children()
    with pytest.raises(TGDError, match="unknown corruption 'smog'"):
        list(applied([Condition("contrast", 1, None), Condition("smog", 1, None)], images,
                     workers=2))
    with pytest.raises(TGDError, match="corruption workers must be >= 1, got 0"):
        next(applied(sweep, images, workers=0))
    assert _worker_count(None, sweep, PARALLEL_MIN_IMAGES // len(sweep) - 1) == 1
    assert _worker_count(8, sweep, 1) == 6  # one per condition that changes the images
    assert _worker_count(3, [Condition("clean", 0, None)], 10**6) == 1


def test_the_automatic_pool_fits_the_cpus_and_the_available_memory(monkeypatch) -> None:
    import tgd_core.evaluation.sweep as sweep_module

    sweep = conditions(("contrast", "fog"), (1, 2, 3, 4, 5))  # 10 that change the images
    per_worker = 10_000 * sweep_module.WORKER_BYTES_PER_IMAGE
    assert 0 < sweep_module._available_bytes()
    monkeypatch.setattr(sweep_module.os, "sched_getaffinity", lambda pid: set(range(16)))
    for available, expected in ((100 * per_worker, 10), (3.5 * per_worker, 3), (0, 1)):
        monkeypatch.setattr(sweep_module, "_available_bytes", lambda a=available: int(a))
        assert sweep_module._worker_count(None, sweep, 10_000) == expected


def _strict(text: str):
    """Parse strict JSON: NaN and Infinity are refused."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def test_cli_refuses_a_checkpoint_with_non_finite_weights(tmp_path: Path, capsys) -> None:
    """#16 problem 5: a NaN checkpoint used to evaluate silently (exit 0, "nll": NaN)."""
    path = save_checkpoint(tmp_path / "ok.pt", build_model("wrn16_1"), input_kind="raw",
                           normalization=CIFAR10_RAW)
    raw = torch.load(path, weights_only=True)
    raw["state_dict"]["conv1.weight"].fill_(float("nan"))
    torch.save(raw, tmp_path / "nan.pt")
    assert cli.main(["evaluate", "--checkpoint", str(tmp_path / "nan.pt"), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert str(tmp_path / "nan.pt") in captured.err and "1 of " in captured.err


def test_non_finite_metrics_reach_json_as_null(tmp_path: Path, capsys) -> None:
    """#16 problem 5: finite weights whose logits overflow give NaN NLL; `evaluate --json` and a
    JSON sweep table stay strict JSON with null."""
    net = build_model("wrn16_1")
    with torch.no_grad():
        net.fc.weight[0].fill_(3e38)
        net.fc.weight[1].fill_(-3e38)
    path = save_checkpoint(tmp_path / "huge.pt", net, input_kind="raw",
                           normalization=CIFAR10_RAW)
    assert cli.main(["evaluate", "--checkpoint", str(path), "--limit", "16", "--json"]) == 0
    out = _strict(capsys.readouterr().out)
    assert out["nll"] is None and out["n"] == 16
    rows = [{"corruption": "clean", "accuracy": 10.0, "nll": math.nan, "ece": math.inf}]
    table = _strict(write_table(rows, tmp_path / "t.json").read_text())
    assert table == [{"corruption": "clean", "accuracy": 10.0, "nll": None, "ece": None}]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []
