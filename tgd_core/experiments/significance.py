"""Statistics over seeds: a row's mean ± sample standard deviation, and whether a method's
difference from the baseline is real — the mean difference over seeds with a 95 % Student-t
confidence interval and a two-sided t-test p-value (``scipy.stats``).

Two rows of a recipe are compared **paired by seed** (paired t-test on the per-seed differences
d_k = m_k − b_k over the seeds both rows have: Δ = mean(d), CI Δ ± t_{0.975, n−1}·sd(d)/√n) when
their runs share everything but the method: the same data and training settings, and the
baseline's teachers in the same roles (the method may add teachers, parameters, a PI
representation for its PI teacher or TGD's annealing start). Otherwise they are compared
**unpaired** (Welch's t-test: Δ = mean(m) − mean(b), CI Δ ± t_{0.975, ν}·√(s_m²/n_m + s_b²/n_b)
with the Welch–Satterthwaite ν).

Several rows compared with one baseline are several tests: for each number, the rows' p-values
are also adjusted for multiple comparisons by Holm's step-down method (Holm 1979, "A simple
sequentially rejective multiple test procedure"; controls the family-wise error rate, no
assumption on how the tests depend): with the m defined p-values sorted, p_(1) ≤ … ≤ p_(m),
p̃_(i) = max_{j ≤ i} min(1, (m − j + 1)·p_(j)). One comparison is its own family (p̃ = p).

Seeds whose value is NaN (a diverged run) are left out — in a paired comparison the whole pair —
and the numbers of values used are reported. With fewer than two values on a side (e.g. one
seed) the interval and the p-value are undefined (``None``), never 0; with no spread at all
(every difference identical) the interval is the point and the p-value undefined.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from tgd_core.experiments.recipe import Recipe

LEVEL = 0.95


#: the per-seed numbers compared with the baseline: key -> label in results.md
COMPARED = {"best_accuracy": "best acc", "last_accuracy": "last acc",
            "corrupted_mean": "mean corrupted acc", "noise_mean": "Gaussian-noise acc",
            "last_ece": "last ECE", "last_nll": "last NLL"}

#: training settings a method may change and still be paired with its baseline (what the method
#: is: its loss, parameters, teachers, the PI representation its PI teacher reads, its start)
METHOD_FIELDS = frozenset({"method", "method_params", "teachers", "init_student", "pi"})


# --- a row: mean ± std over seeds ----------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN if a value is NaN (a
    diverged run shows in the table; the significance columns leave it out and say so)."""
    if any(math.isnan(v) for v in values):
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def format_mean_std(mean: float, std: float, seeds: int, digits: int = 2) -> str:
    """``mean ± std`` (``digits`` decimals); the mean alone from one seed, whose 0 standard
    deviation is no measured spread."""
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if seeds > 1 else "")


# --- a difference from the baseline --------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """mean(method) − mean(baseline) over seeds, its t-interval and two-sided p-value.
    ``delta`` is None when a side has no value; ``low``/``high``/``p`` when undefined."""

    test: str  # "paired" or "welch"
    delta: float | None
    low: float | None
    high: float | None
    p: float | None
    n: int  # values of the method used (pairs, if paired)
    n_baseline: int

    def columns(self, key: str) -> dict[str, Any]:
        """The difference as summary columns ``<key>_delta``, ``_delta_low``, ``_delta_high``,
        ``_delta_p``, ``_delta_n``, ``_delta_n_baseline``."""
        return {f"{key}_delta": self.delta, f"{key}_delta_low": self.low,
                f"{key}_delta_high": self.high, f"{key}_delta_p": self.p,
                f"{key}_delta_n": self.n, f"{key}_delta_n_baseline": self.n_baseline}


def paired_difference(method: list[float], baseline: list[float], level: float = LEVEL
                      ) -> Difference:
    """Paired t-test of ``method`` against ``baseline`` (the k-th values share seed k); pairs
    with a NaN are left out."""
    if len(method) != len(baseline):
        raise ValueError(f"paired values differ in number ({len(method)} vs {len(baseline)})")
    pairs = [(m, b) for m, b in zip(method, baseline, strict=True) if _finite(m) and _finite(b)]
    diffs = [m - b for m, b in pairs]
    n = len(diffs)
    if n < 2:
        return Difference("paired", diffs[0] if diffs else None, None, None, None, n, n)
    delta, se = statistics.fmean(diffs), statistics.stdev(diffs) / math.sqrt(n)
    if _no_spread(se, [v for pair in pairs for v in pair]):
        return Difference("paired", delta, delta, delta, None, n, n)
    from scipy import stats

    result = stats.ttest_rel([m for m, _ in pairs], [b for _, b in pairs])
    ci = result.confidence_interval(level)
    return Difference("paired", delta, float(ci.low), float(ci.high), float(result.pvalue), n, n)


def welch_difference(method: list[float], baseline: list[float], level: float = LEVEL
                     ) -> Difference:
    """Welch's unequal-variance t-test of ``method`` against ``baseline`` (NaNs left out)."""
    m = [v for v in method if _finite(v)]
    b = [v for v in baseline if _finite(v)]
    delta = statistics.fmean(m) - statistics.fmean(b) if m and b else None
    if len(m) < 2 or len(b) < 2:
        return Difference("welch", delta, None, None, None, len(m), len(b))
    se = math.sqrt(statistics.variance(m) / len(m) + statistics.variance(b) / len(b))
    if _no_spread(se, m + b):
        return Difference("welch", delta, delta, delta, None, len(m), len(b))
    from scipy import stats

    result = stats.ttest_ind(m, b, equal_var=False)
    ci = result.confidence_interval(level)
    return Difference("welch", delta, float(ci.low), float(ci.high), float(result.pvalue),
                      len(m), len(b))


def holm_adjusted(pvalues: list[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values of one family of tests, in the order given (see the
    module docstring); an undefined p-value (None) stays None and is not counted in m."""
    defined = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (len(defined) - rank) * p))
        adjusted[i] = running
    return adjusted


def _finite(value: float) -> bool:
    return value is not None and math.isfinite(value)


def _no_spread(se: float, values: list[float]) -> bool:
    """Whether the standard error is zero up to the rounding of ``values`` (their differences
    carry errors of about their size times 2⁻⁵²: values near 1e5 that differ by exactly 1.1
    must not come out "significant" at p ≈ 1e-22 from rounding alone)."""
    return se <= 1e-12 * max(1.0, max(abs(v) for v in values))


def paired_by_seed(recipe: Recipe, method: str, baseline: str) -> bool:
    """Whether rows ``method`` and ``baseline`` of ``recipe`` share everything but the method
    (see the module docstring): then their runs of the same seed are a pair."""
    a, b = recipe.methods[method], recipe.methods[baseline]
    same_teachers = all(a.teachers.get(role) == t for role, t in b.teachers.items())
    return same_teachers and _training_settings(recipe, a) == _training_settings(recipe, b)


def _training_settings(recipe: Recipe, spec) -> dict[str, Any]:
    """What a row's runs learn from, apart from the method: every learned TrainConfig field
    (defaults filled in) except :data:`METHOD_FIELDS`."""
    from tgd_core.training.config import TrainConfig

    values = {**recipe.common, **recipe.student, **spec.overrides}
    ignored = METHOD_FIELDS | TrainConfig.fields_of_kind("placement", "bookkeeping")
    return {name: values.get(name, info.get_default(call_default_factory=True))
            for name, info in TrainConfig.model_fields.items() if name not in ignored}


def compare(recipe: Recipe, per_seed: dict[str, dict[str, list[float]]], baseline: str,
            seeds: dict[str, list[int]] | None = None) -> dict[str, dict[str, Any]]:
    """For every method but ``baseline``: its test ("paired"/"welch") and the
    :class:`Difference` columns of each :data:`COMPARED` number present in ``per_seed``, with
    ``<number>_delta_p_holm``, its p-value Holm-adjusted over the rows (:func:`holm_adjusted`)
    (method -> number -> values in the order of ``seeds[method]``, by default 0, 1, ...).
    Paired rows are paired on the seeds both have (e.g. an interim report of an experiment
    whose rows have not all finished the same seeds); without a common seed, Welch."""
    seeds = seeds or {name: list(range(len(v["last_accuracy"]))) for name, v in per_seed.items()}
    out = {}
    for name, values in per_seed.items():
        if name == baseline:
            continue
        common = [s for s in seeds[name] if s in seeds[baseline]]
        paired = bool(common) and paired_by_seed(recipe, name, baseline)
        row: dict[str, Any] = {"baseline": baseline, "test": "paired" if paired else "welch"}
        for key in COMPARED:
            if key not in values or key not in per_seed[baseline]:
                continue
            if paired:
                mine, theirs = (_at_seeds(v[key], seeds[n], common)
                                for v, n in ((values, name), (per_seed[baseline], baseline)))
                row.update(paired_difference(mine, theirs).columns(key))
            else:
                row.update(welch_difference(values[key], per_seed[baseline][key]).columns(key))
        out[name] = row
    for key in COMPARED:
        family = [row for row in out.values() if f"{key}_delta_p" in row]
        for row, adjusted in zip(family, holm_adjusted([r[f"{key}_delta_p"] for r in family]),
                                 strict=True):
            row[f"{key}_delta_p_holm"] = adjusted
    return out


def _at_seeds(values: list[float], seeds: list[int], wanted: list[int]) -> list[float]:
    """The ``values`` (one per seed of ``seeds``) of the ``wanted`` seeds, in that order."""
    return [values[seeds.index(seed)] for seed in wanted]
