"""Reports of an experiment: per-method statistics over seeds (mean ± std) of the evaluations,
written as ``results.csv``, ``results.md``, ``summary.json`` and plotly HTML plots (accuracy vs
severity per method; reliability diagrams)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from tgd_core.evaluation.sweep import Condition
from tgd_core.experiments.recipe import Recipe


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


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


def summarise(recipe: Recipe, evals: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of every reported number."""
    rows = []
    for name, runs in evals.items():
        row: dict[str, Any] = {"method": name, "seeds": len(runs)}
        metrics = {"best_accuracy": [r["best"]["accuracy"] for r in runs],
                   "last_accuracy": [r["last"]["accuracy"] for r in runs],
                   "last_ece": [r["last"]["ece"] for r in runs],
                   "last_nll": [r["last"]["nll"] for r in runs]}
        for sweep_row in runs[0]["sweep"]:
            condition = Condition.from_row(sweep_row)
            metrics[_column(condition)] = [_accuracy(r, condition) for r in runs]
        for key, values in metrics.items():
            row[f"{key}_mean"], row[f"{key}_std"] = mean_std(values)
        corr = [k for k in metrics if "@" in k and not k.startswith("noise@")]
        if corr:
            per_seed = [statistics.fmean(metrics[k][i] for k in corr) for i in range(len(runs))]
            row["corrupted_mean_mean"], row["corrupted_mean_std"] = mean_std(per_seed)
        rows.append(row)
    return rows


def write_reports(recipe: Recipe, out: Path, rows: list[dict], evals: dict[str, list[dict]],
                  durations: dict[str, float]) -> None:
    """``results.csv``, ``summary.json``, ``results.md`` and the plots, under ``out``."""
    _write_csv(rows, out / "results.csv")
    (out / "summary.json").write_text(json.dumps({"recipe": recipe.model_dump(), "rows": rows,
                                                  "train_seconds": durations}, indent=2) + "\n")
    (out / "results.md").write_text(_markdown(recipe, rows, evals))
    _plots(recipe, out, evals)


def _write_csv(rows: list[dict], path: Path) -> None:
    """The summary rows as CSV: ``method``, ``seeds``, then the other columns sorted."""
    import csv

    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "method", k != "seeds", k))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _plus_minus(row: dict, key: str) -> str:
    """``mean ± std`` of ``key`` in a summary row (2 decimals), ``–`` if absent."""
    return (f"{row[f'{key}_mean']:.2f} ± {row[f'{key}_std']:.2f}" if f"{key}_mean" in row
            else "–")


def _markdown(recipe: Recipe, rows: list[dict], evals: dict[str, list[dict]]) -> str:
    """``results.md``: the summary table, then accuracy per corruption (mean over severities)."""
    lines = [f"# Experiment `{recipe.name}`", "", recipe.description.strip(), "",
             f"Seeds: {recipe.seeds}. Mean ± std over seeds. Accuracy in %, ECE as a fraction "
             "(15 bins), NLL in nats. *best* = the epoch with the highest test accuracy "
             "(selected on the test set, as the reference code does); *last* = the final epoch.",
             "", "| method | best acc | last acc | last ECE | last NLL | mean corrupted acc |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ece = f"{r['last_ece_mean']:.4f} ± {r['last_ece_std']:.4f}"
        lines.append(f"| {r['method']} | {_plus_minus(r, 'best_accuracy')} | "
                     f"{_plus_minus(r, 'last_accuracy')} | {ece} | {_plus_minus(r, 'last_nll')} "
                     f"| {_plus_minus(r, 'corrupted_mean')} |")
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
            m, sd = mean_std(per_seed)
            cells.append(f"{m:.2f} ± {sd:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Plots: `accuracy_vs_severity.html`, `reliability.html`. Full table: "
              "`results.csv`.", ""]
    return "\n".join(lines)


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
                                 name=f"{name} (seed {recipe.seeds[0]})"))
    rel.update_layout(title="Reliability diagrams (last epoch)", xaxis_title="confidence",
                      yaxis_title="accuracy", template="plotly_white")
    rel.write_html(out / "reliability.html", include_plotlyjs="cdn")
