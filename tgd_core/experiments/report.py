"""Reports of an experiment: per-method statistics over seeds (mean ± std) of the evaluations and
each method's difference from the recipe's baseline with a confidence interval and a p-value
(:mod:`.significance`), written as ``results.csv``, ``results.md``, ``summary.json`` and plotly
HTML plots (accuracy vs severity per method; reliability diagrams; TGD's α × β grid as a
heatmap where the recipe sweeps it, :mod:`.grid`)."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path
from typing import Any

from tgd_core.core.fileio import atomic_write
from tgd_core.evaluation.sweep import Condition
from tgd_core.experiments.grid import alpha_beta_grid, grid_figure, grid_markdown
from tgd_core.experiments.recipe import Recipe
from tgd_core.experiments.significance import COMPARED, LEVEL, compare, format_mean_std, mean_std


def _column(condition: Condition) -> str:
    """The summary's name of a sweep condition: ``clean_subset``, ``contrast@5``, ``noise@0.1``."""
    if condition.is_clean:
        return "clean_subset"
    if condition.is_noise:
        return f"noise@{condition.sigma}"
    return f"{condition.name}@{condition.severity}"


def _accuracy(run: dict, condition: Condition) -> float:
    """The accuracy of an evaluated run under ``condition``."""
    return next(s["accuracy"] for s in run["sweep"] if Condition.from_row(s) == condition)


def per_seed(runs: list[dict]) -> dict[str, list[float]]:
    """Every reported number of one method's evaluated runs, per seed (in seed order): best and
    last accuracy, last ECE and NLL, the accuracy under each sweep condition, and its means over
    the corruptions × severities (``corrupted_mean``) and over the noise σ (``noise_mean``)."""
    numbers = {"best_accuracy": [r["best"]["accuracy"] for r in runs],
               "last_accuracy": [r["last"]["accuracy"] for r in runs],
               "last_ece": [r["last"]["ece"] for r in runs],
               "last_nll": [r["last"]["nll"] for r in runs]}
    for sweep_row in runs[0]["sweep"]:
        condition = Condition.from_row(sweep_row)
        numbers[_column(condition)] = [_accuracy(r, condition) for r in runs]
    for mean_key, prefix in (("corrupted_mean", None), ("noise_mean", "noise@")):
        keys = [k for k in numbers if "@" in k and
                (k.startswith(prefix) if prefix else not k.startswith("noise@"))]
        if keys:
            numbers[mean_key] = [statistics.fmean(numbers[k][i] for k in keys)
                                 for i in range(len(runs))]
    return numbers


def summarise(recipe: Recipe, evals: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of every reported number, and (if the
    baseline row was evaluated) its difference from the baseline's (:mod:`.significance`)."""
    numbers = {name: per_seed(runs) for name, runs in evals.items()}
    seeds = {name: [r.get("seed", i) for i, r in enumerate(runs)] for name, runs in evals.items()}
    baseline = recipe.baseline
    compared = compare(recipe, numbers, baseline, seeds) if baseline in numbers else {}
    rows = []
    for name, runs in evals.items():
        row: dict[str, Any] = {"method": name, "seeds": len(runs)}
        for key, values in numbers[name].items():
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values)
        rows.append({**row, **compared.get(name, {})})
    return rows


def write_reports(recipe: Recipe, out: Path, rows: list[dict], evals: dict[str, list[dict]],
                  durations: dict[str, float]) -> None:
    """``results.csv``, ``summary.json``, ``results.md`` and the plots, under ``out`` (the
    tables written atomically: a killed report leaves the last one whole)."""
    teachers = teacher_accuracies(recipe, out)
    grid, by_name = alpha_beta_grid(recipe), {r["method"]: r for r in rows}
    _write_csv(rows, out / "results.csv")
    atomic_write(out / "summary.json", json.dumps({
        "recipe": recipe.model_dump(), "teachers": teachers,
        "significance": _significance_note(rows), "rows": rows,
        "alpha_beta": grid.to_dict(by_name) if grid else None, "train_seconds": durations},
        indent=2) + "\n")
    atomic_write(out / "results.md", _markdown(recipe, rows, evals) + _teacher_table(teachers))
    _plots(recipe, out, evals)
    if grid:
        grid_figure(grid, by_name).write_html(out / "alpha_beta.html", include_plotlyjs="cdn")


def teacher_accuracies(recipe: Recipe, out: Path) -> dict[str, dict[str, Any]]:
    """Each teacher's network, input and test accuracy at its best and last epoch, from the
    ``result.json`` of its training run (this experiment's, a ``reuse`` experiment's, or the
    one beside a reused checkpoint); a checkpoint without one (a shipped model) gives the
    last epoch's from its own metrics, and no best (None)."""
    from tgd_core.experiments.plan import _resolve_checkpoint, read_result, teacher_runs

    trained = teacher_runs(recipe, out, reused={
        role: Path() for role, spec in recipe.teachers.items() if "checkpoint" in spec})
    teachers = {}
    for role, spec in recipe.teachers.items():
        settings = {**recipe.common, **spec}
        run = (_resolve_checkpoint(str(spec["checkpoint"])).parent if "checkpoint" in spec
               else Path(trained[role].out_dir))
        result = read_result(run)
        if result is None and "checkpoint" in spec:
            result = {"last": _checkpoint_metrics(_resolve_checkpoint(str(spec["checkpoint"])))}
        pi = settings.get("pi", {}).get("mode", "paper")
        teachers[role] = {
            "network": settings.get("student", "wrn16_1"),
            "input": "raw" if settings.get("student_input", "raw") == "raw" else f"PI ({pi})",
            "best_accuracy": (result or {}).get("best", {}).get("test_accuracy"),
            "last_accuracy": (result or {}).get("last", {}).get("test_accuracy")}
    return teachers


def _checkpoint_metrics(path: Path) -> dict[str, Any]:
    """The metrics of the epoch a checkpoint saved (its last, for a finished teacher)."""
    from tgd_core.nets.checkpoints import load_checkpoint

    return load_checkpoint(path).metrics or {}


def _teacher_table(teachers: dict[str, dict[str, Any]]) -> str:
    """results.md's table of the teachers and their own test accuracy."""
    def cell(value):
        return "–" if value is None else f"{value:.2f}"

    lines = ["", "Teachers: their own test accuracy (%) in their training run (`result.json`; its "
             "`test_split`/`test_subset`):", "",
             "| teacher | network | input | best acc | last acc |", "|---|---|---|---:|---:|"]
    lines += [f"| {role} | {t['network']} | {t['input']} | {cell(t['best_accuracy'])} | "
              f"{cell(t['last_accuracy'])} |" for role, t in teachers.items()]
    return "\n".join(lines) + "\n" if teachers else ""


def _write_csv(rows: list[dict], path: Path) -> None:
    """The summary rows as CSV: ``method``, ``seeds``, then the other columns sorted."""
    import csv

    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "method", k != "seeds", k))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=keys)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, text.getvalue())


def plus_minus(row: dict, key: str, digits: int = 2) -> str:
    """``mean ± std`` of ``key`` in a summary row (:func:`format_mean_std`), ``–`` if absent."""
    return (format_mean_std(row[f"{key}_mean"], row[f"{key}_std"], row["seeds"], digits)
            if f"{key}_mean" in row else "–")


def seeds_line(recipe: Recipe) -> str:
    """The recipe's seeds, then the rows that have their own, grouped by seeds: ``[0, 1, 2]
    (tgd, mtkd: [0, 1, 2, 3, 4])``."""
    own: dict[str, list[str]] = {}
    for name, spec in recipe.methods.items():
        if spec.seeds:
            own.setdefault(str(spec.seeds), []).append(name)
    groups = "; ".join(f"{', '.join(rows)}: {seeds}" for seeds, rows in own.items())
    return f"{recipe.seeds}" + (f" ({groups})" if groups else "")


def _markdown(recipe: Recipe, rows: list[dict], evals: dict[str, list[dict]]) -> str:
    """``results.md``: the summary table, then accuracy per corruption (mean over severities)."""
    lines = [f"# Experiment `{recipe.name}`", "", recipe.description.strip(), "",
             f"Seeds: {seeds_line(recipe)} (*seeds*: how many of them a row has finished). Mean ± "
             "std over seeds (the value alone from one seed). Accuracy in %, ECE as a fraction "
             "(15 bins), NLL in nats. *best* = the epoch with the highest test accuracy "
             "(selected on the test set, as the reference code does); *last* = the final epoch.",
             "", "| method | seeds | best acc | last acc | last ECE | last NLL | "
             "mean corrupted acc |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['seeds']} | {plus_minus(r, 'best_accuracy')} | "
                     f"{plus_minus(r, 'last_accuracy')} | {plus_minus(r, 'last_ece', 4)} | "
                     f"{plus_minus(r, 'last_nll')} | {plus_minus(r, 'corrupted_mean')} |")
    spec = recipe.evaluation
    lines += ["", f"Accuracy of the last epoch under each corruption (first "
              f"{spec.corruption_subset or 'all'} images of `{spec.split}`), averaged over "
              f"severities {', '.join(map(str, spec.severities))}:", "",
              "| method | " + " | ".join(spec.corruptions) + " |",
              "|---|" + "---:|" * len(spec.corruptions)]
    for name, runs in evals.items():
        cells = []
        for c in spec.corruptions:
            per_seed = [statistics.fmean(s["accuracy"] for s in r["sweep"]
                                         if s["corruption"] == c) for r in runs]
            cells.append(format_mean_std(*mean_std(per_seed), len(per_seed)))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += _significance_table(rows)
    grid = alpha_beta_grid(recipe)
    if grid:
        lines += grid_markdown(grid, {r["method"]: r for r in rows})
    plots = ["accuracy_vs_severity.html", "reliability.html", *(["alpha_beta.html"] * bool(grid))]
    lines += ["", f"Plots: {', '.join(f'`{p}`' for p in plots)}. Full table: `results.csv`.",
              ""]
    return "\n".join(lines)


def _baseline(rows: list[dict]) -> str | None:
    """The baseline the rows were compared with (None if they were not)."""
    return next((r["baseline"] for r in rows if "baseline" in r), None)


def _significance_note(rows: list[dict]) -> dict[str, Any] | None:
    """summary.json's description of the significance columns (None without a baseline)."""
    baseline = _baseline(rows)
    if baseline is None:
        return None
    return {"baseline": baseline, "level": LEVEL, "interval": "Student t",
            "difference": f"method - {baseline}, mean over seeds",
            "tests": {"paired": "paired t-test over seeds (scipy.stats.ttest_rel)",
                      "welch": "Welch's t-test (scipy.stats.ttest_ind, equal_var=False)"},
            "multiple_comparisons": "<number>_delta_p_holm: the p-value adjusted by Holm's "
                                    "step-down method over the rows compared on that number",
            "columns": {f"{k}_delta": v for k, v in COMPARED.items()},
            "undefined": "null: fewer than two values on a side (e.g. one seed), or no spread"}


def _significance_table(rows: list[dict]) -> list[str]:
    """results.md's table of differences from the baseline: Δ [95 % CI], p per number."""
    baseline = _baseline(rows)
    if baseline is None:
        return []
    level = f"{LEVEL * 100:g} %"
    lines = ["", f"**Δ vs {baseline} [{level} CI], p**: method − {baseline}, mean over seeds "
             f"[{level} Student-t confidence interval], two-sided p-value of a paired "
             "t-test over seeds (*paired*: the rows share seeds, data, training settings and "
             f"{baseline}'s teachers) or of Welch's t-test (*welch*: the others), "
             "scipy.stats; *Holm*: that p-value adjusted for comparing every row with "
             f"{baseline} (Holm's step-down method over the rows, per number). "
             "n/a: undefined (fewer than two seeds on a side, or no spread). "
             "Seeds with a NaN, or that only one of the two rows has, are left out (then "
             "`n=` says how many values of the method / of the baseline were used). Accuracy in "
             "points of %; Gaussian-noise acc is the mean over the noise σ.", "",
             "| method | test | " + " | ".join(f"Δ {label} [{level} CI], p"
                                               for label in COMPARED.values()) + " |",
             "|---|---|" + "---:|" * len(COMPARED)]
    baseline_seeds = next(r["seeds"] for r in rows if r["method"] == baseline)
    for r in rows:
        if r.get("baseline") == baseline:
            cells = [delta_cell(r, key, baseline_seeds) for key in COMPARED]
            lines.append(f"| {r['method']} | {r['test']} | " + " | ".join(cells) + " |")
    return lines


def delta_cell(row: dict, key: str, baseline_seeds: int, p_digits: int = 3) -> str:
    """``+0.52 [-0.31, +1.35], p = 0.18, Holm 0.54`` (ECE with 4 decimals; p-values with
    ``p_digits`` significant digits; `, n=2/3` — values used of the method / of the baseline —
    unless every seed of both was used: a NaN seed left out, or the rows have finished other
    seeds); ``–`` if not measured."""
    if row.get(f"{key}_delta") is None:
        return "–"
    digits = 4 if key.endswith("_ece") else 2
    delta, low, high, p = (row[f"{key}_delta{s}"] for s in ("", "_low", "_high", "_p"))
    ci = "n/a" if low is None else f"{low:+.{digits}f}, {high:+.{digits}f}"
    n, n_baseline = row[f"{key}_delta_n"], row[f"{key}_delta_n_baseline"]
    used = "" if n == row["seeds"] and n_baseline == baseline_seeds else f", n={n}/{n_baseline}"
    holm = row.get(f"{key}_delta_p_holm")
    p_text = "n/a" if p is None else f"= {p:.{p_digits}g}, Holm {holm:.{p_digits}g}"
    return f"{delta:+.{digits}f} [{ci}], p {p_text}{used}"


def _plots(recipe: Recipe, out: Path, evals: dict[str, list[dict]]) -> None:
    """``accuracy_vs_severity.html`` and ``reliability.html`` (plotly, loaded from a CDN)."""
    import plotly.graph_objects as go

    spec = recipe.evaluation
    fig = go.Figure()
    for name, runs in evals.items():
        ys = [statistics.fmean(statistics.fmean(s["accuracy"] for s in r["sweep"]
                                                if s["severity"] == sev and s["sigma"] is None
                                                and s["corruption"] != "clean") for r in runs)
              for sev in spec.severities]
        fig.add_trace(go.Scatter(x=list(spec.severities), y=ys, mode="lines+markers", name=name))
    fig.update_layout(title="Accuracy vs corruption severity (mean over corruptions and seeds)",
                      xaxis_title="severity", yaxis_title="accuracy (%)", template="plotly_white")
    fig.write_html(out / "accuracy_vs_severity.html", include_plotlyjs="cdn")
    rel = go.Figure()
    rel.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line=dict(dash="dash", color="#999")))
    for name, runs in evals.items():
        bins = [b for b in runs[0]["last"]["reliability"] if b["count"]]
        rel.add_trace(go.Scatter(x=[b["confidence"] for b in bins],
                                 y=[b["accuracy"] for b in bins], mode="lines+markers",
                                 name=f"{name} (seed {runs[0].get('seed', 0)})"))
    rel.update_layout(title="Reliability diagrams (last epoch)", xaxis_title="confidence",
                      yaxis_title="accuracy", template="plotly_white")
    rel.write_html(out / "reliability.html", include_plotlyjs="cdn")
