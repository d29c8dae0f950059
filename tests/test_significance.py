"""Significance against the baseline (issue #15): the t-interval and p-values on worked examples
checked by hand formulas and the t distribution, the pairing rule, one seed, NaNs, the report
files that carry them, teachers reused from another recipe, and the ablation recipe's plan."""

from __future__ import annotations

import csv
import json
import math
import re
import statistics
import warnings
from pathlib import Path

import pytest
import yaml
from scipy import stats

from tgd_core.cli import main
from tgd_core.core.errors import TGDError
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.experiments.plan import plan, reused_teachers
from tgd_core.experiments.recipe import Recipe
from tgd_core.experiments.report import _markdown, summarise, write_reports
from tgd_core.experiments.significance import (
    holm_adjusted,
    paired_by_seed,
    paired_difference,
    welch_difference,
)

# --- the statistics on fixed numbers -----------------------------------------------------------


def test_paired_three_seeds_matches_the_closed_form_t_distribution_with_2_df():
    # differences d = 1, 2, 6: mean 3, sd √7, se √(7/3), t = 3/√(7/3), df = 2, where the
    # t distribution has a closed form: F(t) = 1/2 + t / (2√(2 + t²)), so the two-sided
    # p = 1 − t/√(2 + t²) and the 97.5 % quantile is 0.95 / √(2·0.975·0.025)
    result = paired_difference([11.0, 22.0, 36.0], [10.0, 20.0, 30.0])
    se = math.sqrt(7 / 3)
    t = 3 / se
    q = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    assert result.test == "paired" and result.n == result.n_baseline == 3
    assert result.delta == pytest.approx(3.0)
    assert result.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert (result.low, result.high) == pytest.approx((3 - q * se, 3 + q * se), rel=1e-9)
    assert result.p == pytest.approx(0.18850, abs=5e-5)  # the number, for the record
    # a 90 % interval: the 95 % quantile 0.9 / √(2·0.95·0.05) of the same closed form
    ninety = paired_difference([11.0, 22.0, 36.0], [10.0, 20.0, 30.0], level=0.9)
    q90 = 0.9 / math.sqrt(2 * 0.95 * 0.05)
    assert (ninety.low, ninety.high) == pytest.approx((3 - q90 * se, 3 + q90 * se), rel=1e-9)


def test_paired_five_seeds_matches_the_t_table_and_the_4_df_closed_form():
    method, baseline = [70, 72, 71, 73, 69], [68, 71, 70, 70, 69]  # d = 2, 1, 1, 3, 0
    result = paired_difference(method, baseline)
    se = math.sqrt(1.3 / 5)  # var(d) = 5.2 / 4
    t = 1.4 / se
    u = 1 + t * t / 4  # t distribution with 4 df: F(t) = 1/2 + 3/8·t/√u·(1 − t²/(12u))
    cdf = 0.5 + 3 / 8 * t / math.sqrt(u) * (1 - t * t / (12 * u))
    assert result.delta == pytest.approx(1.4)
    assert result.p == pytest.approx(2 * (1 - cdf), rel=1e-9)
    assert result.p == pytest.approx(2 * stats.t.sf(t, 4), rel=1e-9)
    t_975_4 = 2.776445105  # printed t tables
    assert (result.low, result.high) == pytest.approx((1.4 - t_975_4 * se, 1.4 + t_975_4 * se))
    # p = 0.0516 and the interval just includes 0: they agree (excludes 0 ⇔ p < 0.05)
    assert result.p == pytest.approx(0.0516, abs=1e-4) and result.low < 0 < result.high


def test_welch_matches_the_welch_satterthwaite_formulas():
    method, baseline = [1.0, 2.0, 3.5], [0.5, 1.2, 2.0, 1.0]
    result = welch_difference(method, baseline)
    vm, vb = statistics.variance(method) / 3, statistics.variance(baseline) / 4
    se, delta = math.sqrt(vm + vb), statistics.fmean(method) - statistics.fmean(baseline)
    df = (vm + vb) ** 2 / (vm**2 / 2 + vb**2 / 3)
    assert df == pytest.approx(2.7432, abs=1e-4)
    assert result.test == "welch" and (result.n, result.n_baseline) == (3, 4)
    assert result.delta == pytest.approx(delta)
    assert result.p == pytest.approx(2 * stats.t.sf(abs(delta) / se, df), rel=1e-9)
    half = stats.t.ppf(0.975, df) * se
    assert (result.low, result.high) == pytest.approx((delta - half, delta + half), rel=1e-9)
    half90 = stats.t.ppf(0.95, df) * se
    ninety = welch_difference(method, baseline, level=0.9)
    assert (ninety.low, ninety.high) == pytest.approx((delta - half90, delta + half90), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Precision loss:RuntimeWarning")  # scipy, constant side
def test_welch_with_one_constant_side_uses_the_other_sides_spread():
    # method constant 0.5, baseline 0.3, 0.5, 0.4 (mean 0.4, variance 0.01): se = √(0.01/3),
    # Welch–Satterthwaite df = n_b − 1 = 2, t = 0.1/se = √3; with 2 df the two-sided
    # p = 1 − t/√(2 + t²) and the 97.5 % quantile is 0.95 / √(2·0.975·0.025)
    result = welch_difference([0.5, 0.5, 0.5], [0.3, 0.5, 0.4])
    se, t = math.sqrt(0.01 / 3), math.sqrt(3)
    q = 0.95 / math.sqrt(2 * 0.975 * 0.025)
    assert result.delta == pytest.approx(0.1)
    assert result.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert (result.low, result.high) == pytest.approx((0.1 - q * se, 0.1 + q * se), rel=1e-9)


def test_one_seed_leaves_the_interval_and_p_undefined_not_zero():
    for difference in (paired_difference, welch_difference):
        result = difference([67.5], [66.0])
        assert result.delta == pytest.approx(1.5)
        assert (result.low, result.high, result.p) == (None, None, None)
    assert welch_difference([1.0, 2.0], [3.0]).p is None  # one value on one side


def test_nans_are_left_out_pairwise_and_counted():
    nan = float("nan")
    full = paired_difference([70, 72, 71, 73], [68, 71, 70, 70])
    with_nan = paired_difference([70, 72, 71, 73, nan], [68, 71, 70, 70, 69])
    assert with_nan == full and with_nan.n == 4
    assert paired_difference([70, nan, 71], [68, 71, nan]).n == 1  # one pair: undefined
    assert paired_difference([70, nan, 71], [68, 71, nan]).p is None
    welch = welch_difference([1.0, 2.0, 3.5, nan], [nan, 0.5, 1.2, 2.0, 1.0])
    assert welch == welch_difference([1.0, 2.0, 3.5], [0.5, 1.2, 2.0, 1.0])
    assert paired_difference([nan, nan], [1.0, 2.0]).delta is None
    assert welch_difference([nan], [1.0, 2.0]).delta is None


def test_infinite_values_are_left_out_like_nans():
    inf = float("inf")  # e.g. the NLL of a diverged run
    assert paired_difference([1.0, inf, 2.0, 4.0], [0.0, 1.0, 0.5, 1.0]) == \
        paired_difference([1.0, 2.0, 4.0], [0.0, 0.5, 1.0])
    assert welch_difference([1.0, 2.0, 3.5, inf], [0.5, 1.2, -inf, 2.0, 1.0]) == \
        welch_difference([1.0, 2.0, 3.5], [0.5, 1.2, 2.0, 1.0])


def test_no_spread_gives_the_point_and_no_p_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        shifted = paired_difference([67.1, 68.3, 66.9], [66.1, 67.3, 65.9])
        same = welch_difference([0.5, 0.5], [0.5, 0.5])
        # a shift of 100.3 on values ~1e5: the differences differ by rounding (se ≈ 5e-12),
        # "no spread" at delta's size (1e-12 · 100.3)
        base = [123456.7, 234567.8, 345678.9]
        big = paired_difference([v + 100.3 for v in base], base)
        # a shift of 1.1: no larger than the values' rounding allows to call spread
        small = paired_difference([v + 1.1 for v in base], base)
    assert shifted.delta == pytest.approx(1.0)
    assert (shifted.low, shifted.high, shifted.p) == pytest.approx((1.0, 1.0, None))
    assert (same.delta, same.low, same.high, same.p) == (0.0, 0.0, 0.0, None)
    assert big.p is None and big.low == big.high == big.delta == pytest.approx(100.3)
    assert small.p is None and small.delta == pytest.approx(1.1)  # was p ≈ 8e-23


def test_holm_adjusts_each_p_value_by_its_rank_and_keeps_the_order():
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, 2 * 0.03, max(0.06, 1 * 0.04)
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjusted([None, 0.02, 0.5]) == [None, pytest.approx(0.04), pytest.approx(0.5)]
    assert holm_adjusted([0.6, 0.7]) == [1.0, 1.0]  # capped at 1
    assert holm_adjusted([0.2]) == [0.2] and holm_adjusted([]) == []


def test_paired_values_must_match_in_number():
    with pytest.raises(ValueError, match="differ in number"):
        paired_difference([1.0, 2.0], [1.0])


# --- which rows are paired ---------------------------------------------------------------------

RECIPE = {
    "name": "sig",
    "common": {"train_subset": 64, "epochs": 1, "augment": False},
    "teachers": {"t1": {"student": "wrn16_1"}, "t2": {"student": "wrn16_1", "student_input": "pi"},
                 "t1_aug": {"student": "wrn16_1", "augment": True}},
    "init": {},
    "student": {"student": "wrn16_1"},
    "methods": {
        "kd_t1": {"method": "kd", "teachers": {"t1": "t1"}},
        "tgd": {"teachers": {"t1": "t1", "t2": "t2"}, "init": True, "params": {"beta": 10}},
        "tgd_cubical": {"method": "tgd", "teachers": {"t1": "t1", "t2": "t2"},
                        "overrides": {"pi": {"mode": "cubical"}, "threads": 1,
                                      "augment": False}},
        "kd_t2": {"method": "kd", "teachers": {"t1": "t2"}},
        "kd_aug": {"method": "kd", "teachers": {"t1": "t1_aug"}, "overrides": {"augment": True}},
        "kd_long": {"method": "kd", "teachers": {"t1": "t1"}, "overrides": {"epochs": 2}},
    },
    "seeds": [0, 1, 2],
    "evaluation": {"corruptions": ["contrast"], "severities": [1, 5], "noise_sigmas": [0.1, 0.2]},
}


def test_rows_are_paired_when_they_share_everything_but_the_method():
    recipe = Recipe(**RECIPE)
    # other loss, parameters, added teachers, annealing, the PI teacher's representation,
    # placement, and settings equal to the common ones: still the baseline's runs, seed by seed
    assert paired_by_seed(recipe, "tgd", "kd_t1")
    assert paired_by_seed(recipe, "tgd_cubical", "kd_t1")
    # another teacher in the baseline's role, other data, another schedule: unpaired
    assert not paired_by_seed(recipe, "kd_t2", "kd_t1")
    assert not paired_by_seed(recipe, "kd_aug", "kd_t1")
    assert not paired_by_seed(recipe, "kd_long", "kd_t1")


def test_the_baseline_is_kd_t1_by_default_or_named_or_none():
    assert Recipe(**RECIPE).baseline == "kd_t1"
    without = {**RECIPE, "methods": {"tgd": RECIPE["methods"]["tgd"]}}
    assert Recipe(**without).baseline is None  # the default baseline is absent: none
    assert Recipe(**Recipe(**without).model_dump()).baseline is None  # and a dump loads again
    assert Recipe(**{**RECIPE, "baseline": "tgd"}).baseline == "tgd"
    assert Recipe(**{**RECIPE, "baseline": None}).baseline is None
    with pytest.raises(ValueError, match="baseline: no method row named 'kd'"):
        Recipe(**{**RECIPE, "baseline": "kd"})


def test_any_number_of_distinct_seeds(tmp_path):
    many = Recipe(**{**RECIPE, "seeds": list(range(12)), "methods": {
        "kd_t1": RECIPE["methods"]["kd_t1"]}})
    labels = [label for label, _ in plan(many, tmp_path)]
    assert [f"kd_t1 seed {k}" for k in range(12)] == labels[-12:]
    path = tmp_path / "dup.yaml"
    path.write_text(yaml.safe_dump({**RECIPE, "seeds": [0, 1, 0]}))
    with pytest.raises(TGDError, match="invalid recipe: seeds: seeds must be distinct"):
        Recipe.load(path)


def test_a_row_may_have_seeds_of_its_own(tmp_path):
    """More seeds for the rows a question turns on: their runs are planned, reported and
    paired (on the seeds both rows have) like any other."""
    rows = {"kd_t1": RECIPE["methods"]["kd_t1"],
            "tgd": {**RECIPE["methods"]["tgd"], "seeds": [0, 1, 2, 3]},
            "kd_t2": {**RECIPE["methods"]["kd_t2"], "seeds": [5]},
            "mtkd": {"teachers": {"t1": "t1", "t2": "t2"}, "seeds": [0, 1, 2, 3]}}
    recipe = Recipe(**{**RECIPE, "seeds": [0, 1], "methods": rows})
    assert (recipe.seeds_of("kd_t1"), recipe.seeds_of("tgd")) == ([0, 1], [0, 1, 2, 3])
    labels = [label for label, _ in plan(recipe, tmp_path) if " seed " in label]
    assert labels == (["kd_t1 seed 0", "kd_t1 seed 1"] + [f"tgd seed {k}" for k in range(4)]
                      + ["kd_t2 seed 5"] + [f"mtkd seed {k}" for k in range(4)])
    assert "Seeds: [0, 1] (tgd, mtkd: [0, 1, 2, 3]; kd_t2: [5]) (*seeds*" in _markdown(
        recipe, [], {})
    alone = Recipe(**{**RECIPE, "seeds": [0, 1], "methods": {"kd_t1": rows["kd_t1"]}})
    assert "Seeds: [0, 1] (*seeds*" in _markdown(alone, [], {})
    path = tmp_path / "dup.yaml"
    for bad, problem in (([3, 3], "seeds must be distinct, got \\[3, 3\\]"),
                         ([], "at least 1 item")):
        path.write_text(yaml.safe_dump({**RECIPE, "methods": {"tgd": {"seeds": bad}}}))
        with pytest.raises(TGDError, match=f"invalid recipe: methods.tgd.seeds: .*{problem}"):
            Recipe.load(path)


# --- the reports -------------------------------------------------------------------------------


def _evaluation(last: float, *, nll: float = 1.0) -> dict:
    """An evaluated run (as runner.evaluate_run writes it) whose numbers derive from ``last``:
    best = last + 1, ECE = last / 1000, contrast@1/@5 = last − 10/−20, noise σ 0.1/0.2 =
    last − 5/−15 (so corrupted mean = last − 15 and Gaussian-noise mean = last − 10)."""
    reliability = [{"count": 4, "confidence": 0.6, "accuracy": 0.5}]
    sweep = [{"corruption": "clean", "severity": 0, "sigma": None, "accuracy": last},
             {"corruption": "contrast", "severity": 1, "sigma": None, "accuracy": last - 10},
             {"corruption": "contrast", "severity": 5, "sigma": None, "accuracy": last - 20},
             {"corruption": "gaussian_noise_sigma", "severity": None, "sigma": 0.1,
              "accuracy": last - 5},
             {"corruption": "gaussian_noise_sigma", "severity": None, "sigma": 0.2,
              "accuracy": last - 15}]
    return {"best": {"accuracy": last + 1, "ece": 0.1, "nll": 1.0, "epoch": 1,
                     "reliability": reliability},
            "last": {"accuracy": last, "ece": last / 1000, "nll": nll, "epoch": 1,
                     "reliability": reliability},
            "sweep": sweep}


def _reports(tmp_path, recipe: Recipe, evals: dict) -> tuple[str, list[dict], dict]:
    t1 = tmp_path / "teachers" / "t1"
    t1.mkdir(parents=True)
    (t1 / "result.json").write_text(json.dumps({"best": {"test_accuracy": 71.5},
                                                "last": {"test_accuracy": 70.25}}))
    rows = summarise(recipe, evals)
    write_reports(recipe, tmp_path, rows, evals, {})
    with open(tmp_path / "results.csv") as f:
        table = list(csv.DictReader(f))
    return ((tmp_path / "results.md").read_text(), table,
            json.loads((tmp_path / "summary.json").read_text()))


def test_rows_that_finished_other_seeds_are_paired_on_the_seeds_both_have():
    recipe = Recipe(**{**RECIPE, "methods": {k: RECIPE["methods"][k]
                                             for k in ("kd_t1", "tgd", "kd_aug")}})

    def runs(values, seeds):
        return [{**_evaluation(v), "seed": s} for v, s in zip(values, seeds, strict=True)]

    # an interim report: tgd has seeds 0 and 2, kd_t1 0, 1, 2 -> pairs (11, 10), (36, 30)
    rows = {r["method"]: r for r in summarise(recipe, {
        "kd_t1": runs((10.0, 20.0, 30.0), (0, 1, 2)), "tgd": runs((11.0, 36.0), (0, 2)),
        "kd_aug": runs((1.0, 2.0), (0, 1))})}
    tgd = rows["tgd"]
    assert tgd["test"] == "paired" and tgd["seeds"] == 2 and tgd["last_accuracy_delta_n"] == 2
    assert tgd["last_accuracy_delta"] == pytest.approx(3.5)  # (1 + 6) / 2
    assert tgd["last_accuracy_delta_p"] == pytest.approx(
        stats.ttest_rel([11.0, 36.0], [10.0, 30.0]).pvalue)
    assert rows["kd_aug"]["test"] == "welch"  # other settings: never paired
    markdown = _markdown(recipe, list(rows.values()), {})
    assert "| tgd | 2 | " in markdown and "| kd_t1 | 3 | " in markdown
    assert re.search(r"\| tgd \| paired \| [^|]*, n=2/2 \|", markdown)  # 2 of kd_t1's 3 seeds
    # no seed in common: Welch
    alone = summarise(recipe, {"kd_t1": runs((10.0, 20.0), (0, 1)),
                               "tgd": runs((11.0, 36.0), (3, 4))})
    assert alone[1]["test"] == "welch"


def test_reports_carry_the_differences_intervals_and_p_values(tmp_path):
    recipe = Recipe(**{**RECIPE, "methods": {k: RECIPE["methods"][k]
                                             for k in ("kd_t1", "tgd", "kd_aug")}})
    nan = float("nan")
    evals = {"kd_t1": [_evaluation(v) for v in (10.0, 20.0, 30.0)],
             "tgd": [_evaluation(v, nll=n) for v, n in ((11.0, 0.5), (22.0, nan), (36.0, 0.7))],
             "kd_aug": [_evaluation(v) for v in (1.0, 2.0, 3.5)]}
    markdown, table, summary = _reports(tmp_path, recipe, evals)

    se, q = math.sqrt(7 / 3), 0.95 / math.sqrt(2 * 0.975 * 0.025)  # d = 1, 2, 6 (see above)
    p = 1 - (3 / se) / math.sqrt(2 + 9 / se**2)
    tgd = next(r for r in summary["rows"] if r["method"] == "tgd")
    assert tgd["baseline"] == "kd_t1" and tgd["test"] == "paired"
    # every compared number moves with `last`, so each has the same paired statistics
    for key in ("best_accuracy", "last_accuracy", "corrupted_mean", "noise_mean"):
        assert tgd[f"{key}_delta"] == pytest.approx(3.0)
        assert (tgd[f"{key}_delta_low"], tgd[f"{key}_delta_high"]) == pytest.approx(
            (3 - q * se, 3 + q * se))
        assert tgd[f"{key}_delta_p"] == pytest.approx(p)
    assert tgd["last_ece_delta"] == pytest.approx(0.003)
    assert tgd["last_ece_delta_p"] == pytest.approx(p)
    assert tgd["noise_mean_mean"] == pytest.approx(statistics.fmean([11, 22, 36]) - 10)
    # the NaN seed of tgd's NLL: two pairs left (differences −0.5, −0.3)
    assert tgd["last_nll_delta_n"] == 2 and tgd["last_nll_delta"] == pytest.approx(-0.4)
    kd_aug = next(r for r in summary["rows"] if r["method"] == "kd_aug")
    assert kd_aug["test"] == "welch"
    p_aug = stats.ttest_ind([1.0, 2.0, 3.5], [10.0, 20.0, 30.0], equal_var=False).pvalue
    assert kd_aug["last_accuracy_delta_p"] == pytest.approx(p_aug)
    # Holm over the two rows compared on last accuracy: the smaller p doubled, the larger
    # never below it
    assert p_aug < p
    holm = {"kd_aug": 2 * p_aug, "tgd": max(2 * p_aug, p)}
    assert kd_aug["last_accuracy_delta_p_holm"] == pytest.approx(holm["kd_aug"])
    assert tgd["last_accuracy_delta_p_holm"] == pytest.approx(holm["tgd"])
    assert "Holm" in summary["significance"]["multiple_comparisons"]
    assert "baseline" not in summary["rows"][0]  # the baseline is not compared with itself
    assert summary["significance"]["baseline"] == "kd_t1"
    assert summary["significance"]["level"] == 0.95

    assert "**Δ vs kd_t1 [95 % CI], p**: method − kd_t1" in markdown and "Student-t" in markdown
    cell = f"+3.00 [{3 - q * se:+.2f}, {3 + q * se:+.2f}], p = {p:.3g}, Holm {holm['tgd']:.3g}"
    assert f"| tgd | paired | {cell} | {cell} | {cell} | {cell} |" in markdown
    assert "n=2/2" in markdown and "| kd_aug | welch |" in markdown
    # the teachers' own accuracy, from their runs' result.json (t1's; the others untrained)
    assert "| t1 | wrn16_1 | raw | 71.50 | 70.25 |" in markdown
    assert "| t2 | wrn16_1 | PI (paper) | – | – |" in markdown
    assert summary["teachers"]["t1"]["last_accuracy"] == 70.25
    assert summary["teachers"]["t1_aug"]["best_accuracy"] is None

    csv_tgd = next(r for r in table if r["method"] == "tgd")
    assert float(csv_tgd["last_accuracy_delta_p"]) == pytest.approx(p)
    assert float(csv_tgd["last_accuracy_delta_p_holm"]) == pytest.approx(holm["tgd"])
    assert csv_tgd["test"] == "paired" and csv_tgd["baseline"] == "kd_t1"
    assert next(r for r in table if r["method"] == "kd_t1")["last_accuracy_delta"] == ""


def test_one_seed_reports_undefined_intervals(tmp_path):
    recipe = Recipe(**{**RECIPE, "seeds": [0], "methods": {k: RECIPE["methods"][k]
                                                           for k in ("kd_t1", "tgd")}})
    evals = {"kd_t1": [_evaluation(60.0)], "tgd": [_evaluation(61.5)]}
    markdown, table, summary = _reports(tmp_path, recipe, evals)
    tgd = summary["rows"][1]
    assert tgd["last_accuracy_delta"] == pytest.approx(1.5)
    assert (tgd["last_accuracy_delta_low"], tgd["last_accuracy_delta_p"]) == (None, None)
    assert "+1.50 [n/a], p n/a" in markdown
    assert table[1]["last_accuracy_delta_low"] == "" and table[1]["last_accuracy_delta_p"] == ""
    # one seed: the value alone, no "± 0.00" that would read as a measured spread
    assert "| tgd | 1 | 62.50 | 61.50 | 0.0615 | 1.00 | 46.50 |" in markdown
    assert "| tgd | 46.50 |" in markdown  # accuracy per corruption, mean over severities
    three = Recipe(**{**recipe.model_dump(), "seeds": [0, 1, 2]})
    markdown, _, _ = _reports(tmp_path / "three", three, {k: v * 3 for k, v in evals.items()})
    assert "| tgd | 3 | 62.50 ± 0.00 | 61.50 ± 0.00 |" in markdown


def test_without_the_baseline_there_is_no_significance_table(tmp_path):
    recipe = Recipe(**{**RECIPE, "methods": {"tgd": RECIPE["methods"]["tgd"]}})
    markdown, table, summary = _reports(tmp_path, recipe, {"tgd": [_evaluation(50.0)] * 3})
    assert "Δ vs" not in markdown and summary["significance"] is None
    assert "last_accuracy_delta" not in table[0]
    # a run of some rows only (--only) that leaves the baseline out: no comparison either
    assert "baseline" not in summarise(Recipe(**RECIPE), {"tgd": [_evaluation(50.0)] * 3})[0]


# --- teachers of another recipe; the ablation recipe -------------------------------------------


@pytest.mark.usefixtures("cifar_test_images")
def test_a_teacher_from_another_recipe_takes_its_settings_and_then_its_checkpoint(tmp_path,
                                                                                  monkeypatch):
    from tgd_core.training import run_training

    monkeypatch.chdir(tmp_path)
    tiny = {"name": "tiny", "common": {"train_subset": 64, "test_split": "test_lossless_1k",
                                       "test_subset": 32, "epochs": 1, "batch_size": 32,
                                       "threads": 2, "fixed_batches": True},
            "teachers": {"t1": {"student": "wrn16_1", "seed": 7}},
            "methods": {"scratch": {}}, "seeds": [0]}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(tiny))
    user = {"name": "user", "common": {**tiny["common"], "lr": 0.5},  # lr must not leak in
            "teachers": {"t1": {"from_recipe": str(tmp_path / "tiny.yaml"), "name": "t1"}},
            "methods": {"kd_t1": {"method": "kd", "teachers": {"t1": "t1"}}}, "seeds": [0]}
    (tmp_path / "user.yaml").write_text(yaml.safe_dump(user))

    tiny_runs = dict(plan(Recipe.load(tmp_path / "tiny.yaml"), tmp_path / "runs/experiments/tiny"))
    before = dict(plan(Recipe.load(tmp_path / "user.yaml"), tmp_path / "user"))
    # not trained by its own experiment yet: trained here, with the other recipe's settings
    assert before["teacher t1"].seed == 7 and before["teacher t1"].lr == 0.1
    assert before["teacher t1"].differences(tiny_runs["teacher t1"].model_dump()) == []
    run_training(tiny_runs["teacher t1"], progress=False)  # as `tgd experiment tiny.yaml` would
    after = Recipe.load(tmp_path / "user.yaml")  # its experiment trained it: reused, checked
    trained = Path("runs/experiments/tiny/teachers/t1/latest.pt")  # the CLI's default folder
    assert reused_teachers(after, tmp_path / "user") == {"t1": trained}
    runs = dict(plan(after, tmp_path / "user"))
    assert "teacher t1" not in runs
    assert runs["kd_t1 seed 0"].teachers == {"t1": "runs/experiments/tiny/teachers/t1/latest.pt"}

    bad = tmp_path / "bad.yaml"
    for teacher, problem in (({"from_recipe": "paper", "name": "t9"},
                              r"teacher t1: recipe 'paper' has no teacher 't9' \(it has t1, t2\)"),
                             ({"from_recipe": "no_such_recipe", "name": "t1"},
                              "teacher t1: .*no_such_recipe.yaml: cannot read recipe"),
                             ({"from_recipe": "paper"}, "teacher t1: .*name: Field required"),
                             ({"from_recipe": str(bad), "name": "t1"},
                              "teacher t1: .*refers back")):
        bad.write_text(yaml.safe_dump({**user, "teachers": {"t1": teacher}}))
        with pytest.raises(TGDError, match=f"bad.yaml: invalid recipe: teachers: {problem}"):
            Recipe.load(bad)


def test_the_ablation_recipe_parses_and_plans_every_row(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no paper experiment here: its teachers are planned as todo
    path = PROJECT_ROOT / "recipes" / "ablation.yaml"
    recipe = Recipe.load(path)
    paper = Recipe.load(PROJECT_ROOT / "recipes" / "paper.yaml")
    assert len(recipe.seeds) == 5 and recipe.baseline == "kd_t1"
    cells = [n for n in recipe.methods if n == "tgd" or re.fullmatch(r"tgd_a[\d.]+_b\d+", n)]
    grid = [(recipe.methods[n].params.get("alpha", 0.99), recipe.methods[n].params.get("beta",
                                                                                       3000))
            for n in cells]
    assert sorted(grid) == [(a, b) for a in (0.5, 0.9, 0.99) for b in (0, 1000, 3000, 10000)]
    assert all(recipe.methods[n].init for n in cells)  # the grid anneals, as the paper's TGD

    runs = dict(plan(recipe, tmp_path / "abl"))
    paper_runs = dict(plan(paper, tmp_path / "paper"))
    for role in ("t1", "t2"):  # paper.yaml's teachers, setting for setting
        assert runs[f"teacher {role}"].differences(
            paper_runs[f"teacher {role}"].model_dump()) == []
    assert runs["kd_t1 seed 0"].train_subset is None and runs["kd_t1 seed 0"].epochs == 200
    assert runs["tgd_a0.5_b10000 seed 4"].method_params == {"alpha": 0.5, "beta": 10000}
    assert paired_by_seed(recipe, "tgd_cubical_grey", "kd_t1")
    control = runs["tgd_raw_t2_a0.5 seed 2"]  # alpha 0.5's weak-teacher control
    assert control.differences(runs["tgd_a0.5_b3000 seed 2"].model_dump()) == ["teachers"]
    assert (runs["teacher t2_raw_weak"].differences(runs["teacher t1"].model_dump())
            == ["epochs"])
    raw_b0 = runs["tgd_raw_t2_a0.5_b0 seed 2"]  # with tgd_a0.5_b0: T2 x similarity term
    assert raw_b0.differences(control.model_dump()) == ["method_params"]
    assert raw_b0.differences(runs["tgd_a0.5_b0 seed 2"].model_dump()) == ["teachers"]
    assert not paired_by_seed(recipe, "tgd_aug", "kd_t1")

    assert main(["experiment", str(path), "--plan", "--out", str(tmp_path / "abl")]) == 0
    listed = capsys.readouterr().out.splitlines()
    for name in recipe.methods:
        for seed in recipe.seeds:
            assert any(line.split()[1:4] == [name, "seed", str(seed)] for line in listed), name
    assert len(listed) == len(recipe.teachers) + 1 + len(recipe.methods) * 5


# --- the α × β grid ------------------------------------------------------------------------------

def _tgd_row(alpha=None, beta=None, init=True):
    params = {k: v for k, v in (("alpha", alpha), ("beta", beta)) if v is not None}
    return {"method": "tgd", "teachers": {"t1": "t1", "t2": "t2"}, "init": init,
            "params": params}


def test_the_alpha_beta_grid_is_tabulated_and_plotted_from_the_rows_that_sweep_it(tmp_path):
    from tgd_core.experiments.grid import alpha_beta_grid

    recipe = Recipe(**{**RECIPE, "methods": {
        "kd_t1": RECIPE["methods"]["kd_t1"], "tgd": _tgd_row(),  # the defaults: 0.99, 3000
        "tgd_b0": _tgd_row(beta=0), "tgd_a0.5_b0": _tgd_row(0.5, 0),
        "tgd_a0.5": _tgd_row(alpha=0.5),
        "tgd_no_anneal": _tgd_row(alpha=0.5, beta=0, init=False)}})  # another group: not shown
    grid = alpha_beta_grid(recipe)
    assert (grid.alphas, grid.betas) == ([0.5, 0.99], [0.0, 3000.0])
    assert grid.cells == {(0.99, 3000.0): "tgd", (0.99, 0.0): "tgd_b0",
                          (0.5, 0.0): "tgd_a0.5_b0", (0.5, 3000.0): "tgd_a0.5"}
    last = {"kd_t1": 10.0, "tgd": 20.0, "tgd_b0": 30.0, "tgd_a0.5_b0": 40.0, "tgd_a0.5": 50.0,
            "tgd_no_anneal": 60.0}
    evals = {name: [_evaluation(v), _evaluation(v + 2)] for name, v in last.items()}
    markdown, _, summary = _reports(tmp_path, recipe, evals)
    # last accuracy: mean of v and v + 2, std √2; corrupted mean = last − 15
    assert "| 0.5 | 41.00 ± 1.41 (`tgd_a0.5_b0`) | 51.00 ± 1.41 (`tgd_a0.5`) |" in markdown
    assert "| 0.99 | 31.00 ± 1.41 (`tgd_b0`) | 21.00 ± 1.41 (`tgd`) |" in markdown
    assert "| 0.99 | 16.00 ± 1.41 (`tgd_b0`) | 6.00 ± 1.41 (`tgd`) |" in markdown
    cell = next(c for c in summary["alpha_beta"]["cells"] if c["method"] == "tgd_a0.5")
    assert (cell["alpha"], cell["beta"]) == (0.5, 3000.0)
    assert (cell["last_accuracy_mean"], cell["corrupted_mean_mean"]) == (51.0, 36.0)
    assert "`alpha_beta.html`" in markdown
    html = (tmp_path / "alpha_beta.html").read_text()
    assert '"type":"heatmap"' in html and "tgd_a0.5_b0" in html
    # one value of α: no grid, no plot
    flat = Recipe(**{**RECIPE, "methods": {k: recipe.methods[k].model_dump()
                                           for k in ("kd_t1", "tgd", "tgd_b0")}})
    assert alpha_beta_grid(flat) is None
    markdown, _, summary = _reports(tmp_path / "flat", flat, {k: evals[k] for k in flat.methods})
    assert summary["alpha_beta"] is None and "α × β" not in markdown
    assert not (tmp_path / "flat" / "alpha_beta.html").exists()


def test_the_ablation_recipe_sweeps_a_3_by_4_alpha_beta_grid_around_tgd():
    from tgd_core.experiments.grid import alpha_beta_grid

    grid = alpha_beta_grid(Recipe.load(PROJECT_ROOT / "recipes" / "ablation.yaml"))
    assert (grid.alphas, grid.betas) == ([0.5, 0.9, 0.99], [0.0, 1000.0, 3000.0, 10000.0])
    assert len(grid.cells) == 12 and grid.cells[(0.99, 3000.0)] == "tgd"
    assert grid.cells[(0.5, 1000.0)] == "tgd_a0.5_b1000"
