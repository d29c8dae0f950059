"""Plotly figures for the app: persistence diagrams and persistence-image grids."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLOURS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "grey": "#555555"}


def diagram_figure(diagrams: list[tuple[str, str, np.ndarray]], title: str) -> go.Figure:
    """Scatter of (birth, death) points with the diagonal. ``diagrams``: (label, colour key,
    (k, 2) array) — infinite deaths are drawn on a dashed line above the finite points."""
    finite = [d[np.isfinite(d).all(axis=1)] for _, _, d in diagrams if len(d)]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(1)
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 1e-6))
    pad = 0.05 * (hi - lo)
    inf_level = hi + 2 * pad
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[lo - pad, inf_level], y=[lo - pad, inf_level], mode="lines",
                             line=dict(color="#999", width=1), name="diagonal",
                             hoverinfo="skip", showlegend=False))
    symbols = {"H0": "circle", "H1": "diamond"}
    for label, colour, dgm in diagrams:
        if len(dgm) == 0:
            continue
        dgm = np.asarray(dgm, float)
        ess = ~np.isfinite(dgm[:, 1])
        y = np.where(ess, inf_level if np.all(dgm[ess, 1] > 0) else lo - 2 * pad, dgm[:, 1])
        death_text = np.where(ess, "∞", np.char.mod("%.4f", dgm[:, 1]))
        dim = label.split()[-1] if label.split()[-1] in symbols else "H0"
        fig.add_trace(go.Scatter(
            x=dgm[:, 0], y=y, mode="markers", name=f"{label} ({len(dgm)})",
            marker=dict(color=COLOURS.get(colour, colour), symbol=symbols[dim], size=7,
                        opacity=0.75, line=dict(width=0.5, color="white")),
            customdata=np.stack([death_text, np.abs(np.where(ess, np.nan, dgm[:, 1] - dgm[:, 0]))],
                                axis=1),
            hovertemplate="birth %{x:.4f}<br>death %{customdata[0]}<br>"
                          "persistence %{customdata[1]:.4f}<extra>" + label + "</extra>"))
    if any((~np.isfinite(np.asarray(d, float)[:, 1])).any() for _, _, d in diagrams if len(d)):
        fig.add_hline(y=inf_level, line=dict(color="#bbb", dash="dash", width=1),
                      annotation_text="∞", annotation_position="right")
    fig.update_layout(title=title, xaxis_title="birth", yaxis_title="death", height=480,
                      margin=dict(l=50, r=20, t=50, b=40), legend=dict(font=dict(size=11)),
                      template="plotly_white")
    return fig


def heatmap_grid(images: np.ndarray, titles: list[str], title: str,
                 extent: tuple[float, float, float, float] | None = None,
                 columns: int = 3) -> go.Figure:
    """Grid of heatmaps (row 0 of each image drawn at the top). ``extent`` = (x0, x1, y0, y1)
    labels the axes in diagram units (birth on x, persistence on y)."""
    n = len(images)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles,
                        horizontal_spacing=0.04, vertical_spacing=0.12)
    for i, img in enumerate(images):
        img = np.asarray(img, float)
        h, w = img.shape
        kw = {}
        if extent is not None:
            x0, x1, y0, y1 = extent
            kw = dict(x=np.linspace(x0, x1, w), y=np.linspace(y1, y0, h))
        fig.add_trace(go.Heatmap(z=img, colorscale="Viridis", showscale=(i == 0), **kw,
                                 hovertemplate="birth %{x}<br>persistence %{y}<br>"
                                               "value %{z:.4g}<extra></extra>"),
                      row=i // cols + 1, col=i % cols + 1)
    if extent is None:
        fig.update_yaxes(autorange="reversed")
    fig.update_layout(title=title, height=260 * rows + 60, margin=dict(l=40, r=20, t=70, b=30),
                      template="plotly_white")
    return fig
