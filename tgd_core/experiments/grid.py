"""The α × β grid of an experiment: TGD's two weights (TGD_METHOD.md §4: α mixes the teachers'
similarity maps and logits, β weighs the similarity term) swept over rows that differ in
nothing else, shown as tables and a heatmap (issue #15's ablation, ``recipes/ablation.yaml``).

A recipe's rows form the grid when their method has both ``alpha`` and ``beta`` parameters
(defaults filled in: a row that sets neither is the cell α 0.99, β 3000) and they share the
method, teachers, annealing start, overrides and every other parameter; of several such groups
the largest is shown. A grid needs at least two values of each weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tgd_core.experiments.recipe import MethodSpec, Recipe
from tgd_core.experiments.significance import format_mean_std

#: the summary numbers the grid shows: key -> label
SHOWN = {"last_accuracy": "last-epoch accuracy (%)",
         "corrupted_mean": "mean corrupted accuracy (%)"}


@dataclass(frozen=True)
class Grid:
    """The rows of one α × β sweep: ``cells[(alpha, beta)]`` is the row's name."""

    alphas: list[float]
    betas: list[float]
    cells: dict[tuple[float, float], str]

    def value(self, rows: dict[str, dict], alpha: float, beta: float, key: str
              ) -> tuple[float, float, int] | None:
        """Mean and std over seeds of ``key`` at a cell, and the seeds (None: no row, or not
        evaluated)."""
        row = rows.get(self.cells.get((alpha, beta), ""))
        if row is None or f"{key}_mean" not in row:
            return None
        return row[f"{key}_mean"], row[f"{key}_std"], row["seeds"]

    def to_dict(self, rows: dict[str, dict]) -> dict[str, Any]:
        """summary.json's ``alpha_beta``: the axes and, per cell, its row and shown numbers."""
        cells = []
        for (alpha, beta), name in sorted(self.cells.items()):
            values = {key: self.value(rows, alpha, beta, key) for key in SHOWN}
            cells.append({"alpha": alpha, "beta": beta, "method": name,
                          **{f"{k}_mean": v and v[0] for k, v in values.items()},
                          **{f"{k}_std": v and v[1] for k, v in values.items()}})
        return {"alphas": self.alphas, "betas": self.betas, "cells": cells}


def alpha_beta_grid(recipe: Recipe) -> Grid | None:
    """The recipe's largest group of rows that differ only in α and β, if it spans at least two
    values of each (else None)."""
    groups: dict[str, dict[tuple[float, float], str]] = {}
    for name, spec in recipe.methods.items():
        weights = _weights(name, spec)
        if weights is not None:
            key, cell = weights
            groups.setdefault(key, {}).setdefault(cell, name)
    if not groups:
        return None
    cells = max(groups.values(), key=len)
    alphas = sorted({a for a, _ in cells})
    betas = sorted({b for _, b in cells})
    return Grid(alphas, betas, cells) if len(alphas) > 1 and len(betas) > 1 else None


def _weights(name: str, spec: MethodSpec) -> tuple[str, tuple[float, float]] | None:
    """(what the row shares with its grid, (α, β)) for a row whose method has both weights."""
    from tgd_core.distill.registry import get_method

    method = spec.method or name
    params = get_method(method).Params(**spec.params).model_dump()
    if "alpha" not in params or "beta" not in params:
        return None
    alpha, beta = params.pop("alpha"), params.pop("beta")
    shared = {"method": method, "params": params, "teachers": spec.teachers, "init": spec.init,
              "overrides": spec.overrides}
    return json.dumps(shared, sort_keys=True, default=str), (alpha, beta)


def grid_markdown(grid: Grid, rows: dict[str, dict]) -> list[str]:
    """results.md's α × β tables: one per shown number, α down, β across, mean ± std."""
    lines = ["", "**α × β** (the TGD rows that differ only in α and β; mean ± std over seeds, "
             "the row in brackets; plot: `alpha_beta.html`):"]
    for key, label in SHOWN.items():
        lines += ["", f"{label[0].upper()}{label[1:]}:", "",
                  "| α \\ β | " + " | ".join(f"{b:g}" for b in grid.betas) + " |",
                  "|---|" + "---:|" * len(grid.betas)]
        for alpha in grid.alphas:
            cells = [_cell(grid, rows, alpha, beta, key) for beta in grid.betas]
            lines.append(f"| {alpha:g} | " + " | ".join(cells) + " |")
    return lines


def _cell(grid: Grid, rows: dict[str, dict], alpha: float, beta: float, key: str) -> str:
    value = grid.value(rows, alpha, beta, key)
    if value is None:
        return "–"
    return f"{format_mean_std(*value)} (`{grid.cells[(alpha, beta)]}`)"


def grid_figure(grid: Grid, rows: dict[str, dict]):
    """A plotly figure: one heatmap per shown number over α (rows) × β (columns), each cell
    labelled with its mean ± std and row; missing cells left blank."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(SHOWN), subplot_titles=list(SHOWN.values()),
                        horizontal_spacing=0.12)
    x, y = [f"β={b:g}" for b in grid.betas], [f"α={a:g}" for a in grid.alphas]
    for col, key in enumerate(SHOWN, start=1):
        values = [[grid.value(rows, a, b, key) for b in grid.betas] for a in grid.alphas]
        z = [[v and v[0] for v in line] for line in values]
        text = [[_label(grid, a, b, v) for b, v in zip(grid.betas, line, strict=True)]
                for a, line in zip(grid.alphas, values, strict=True)]
        fig.add_trace(go.Heatmap(z=z, x=x, y=y, text=text, texttemplate="%{text}",
                                 colorscale="Viridis", hoverongaps=False,
                                 colorbar=dict(x=col / len(SHOWN) - 0.04, len=0.9)),
                      row=1, col=col)
    fig.update_layout(title="TGD's α × β grid (mean over seeds)", template="plotly_white")
    return fig


def _label(grid: Grid, alpha: float, beta: float, value: tuple[float, float, int] | None
           ) -> str:
    return "" if value is None else f"{format_mean_std(*value)}<br>{grid.cells[(alpha, beta)]}"
