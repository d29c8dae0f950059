"""Plotly figures for the app: persistence diagrams and persistence-image grids."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COLOURS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "grey": "#555555"}


#: The most diagram points one figure draws: more freeze the browser tab (a 500×375 photo has
#: ~300,000), and the hidden ones are the least persistent, next to the diagonal.
MAX_DIAGRAM_POINTS = 5_000


def persistence(dgm: np.ndarray) -> np.ndarray:
    """|death − birth| of each (birth, death) point; infinite for essential points."""
    dgm = np.asarray(dgm, float).reshape(-1, 2)
    return np.abs(dgm[:, 1] - dgm[:, 0])


def most_persistent(diagrams: list[np.ndarray], limit: int) -> list[np.ndarray]:
    """Per diagram, the indices of its points among the ``limit`` most persistent of all the
    diagrams together (every point when there are no more than ``limit``)."""
    pers = [persistence(d) for d in diagrams]
    sizes = [len(p) for p in pers]
    if sum(sizes) <= limit:
        return [np.arange(n) for n in sizes]
    flat = np.nan_to_num(np.concatenate(pers), nan=-1.0)
    keep = np.zeros(len(flat), bool)
    keep[np.argpartition(-flat, limit - 1)[:limit]] = True
    return [np.flatnonzero(k) for k in np.split(keep, np.cumsum(sizes)[:-1])]


def _shown_title(title: str, shown: int, total: int) -> str:
    """The figure title, with how many of the points are drawn when not all are."""
    if shown == total:
        return title
    return f"{title}<br><sup>showing the {shown:,} most persistent of {total:,} points</sup>"


#: What diagram and PI values measure: pixel intensities scaled to [0, 1] (/255), as both
#: modes filter the image (TGD_METHOD §2).
UNITS = "intensity, 0–1"
WINDOW_NAME = "PI window"


def _window_polygon(extent: tuple[float, float, float, float]) -> tuple[list, list]:
    """The PI window {x0 ≤ birth ≤ x1, y0 ≤ persistence ≤ y1} in birth–death coordinates (a
    parallelogram: death = birth + persistence), as the closed outline's x and y."""
    x0, x1, y0, y1 = extent
    xs = [x0, x1, x1, x0, x0]
    return xs, [x + p for x, p in zip(xs, [y0, y0, y1, y1, y0], strict=True)]


def window_counts(diagrams: list[tuple[str, str, np.ndarray]],
                  extent: tuple[float, float, float, float]) -> tuple[int, int]:
    """(points inside the PI window, finite points) over all ``diagrams``: only the points
    inside add more than a Gaussian tail to the PIs (TGD_METHOD §2, step 4)."""
    x0, x1, y0, y1 = extent
    inside = total = 0
    for _, _, d in diagrams:
        d = np.asarray(d, float).reshape(-1, 2)
        d = d[np.isfinite(d).all(axis=1)]
        pers = d[:, 1] - d[:, 0]
        inside += int(((d[:, 0] >= x0) & (d[:, 0] <= x1) & (pers >= y0) & (pers <= y1)).sum())
        total += len(d)
    return inside, total


def diagram_spec(diagrams: list[tuple[str, str, np.ndarray]], title: str,
                 max_points: int = MAX_DIAGRAM_POINTS,
                 window: tuple[float, float, float, float] | None = None,
                 units: str = UNITS) -> dict:
    """Plotly JSON (plain dict, numpy arrays) of a WebGL scatter of (birth, death) points with
    the diagonal. ``diagrams``: (label, colour key, (k, 2) array) — infinite deaths are drawn
    on a dashed line above the finite points. At most ``max_points`` are drawn, the most
    persistent (:func:`most_persistent`); the legend and title say how many of how many.
    ``window`` (birth min, birth max, persistence min, persistence max): the PIs' extent, drawn
    as its outline — a rectangle in birth × persistence, a parallelogram here — whose legend
    entry and hover say that points outside it add (almost) nothing to the PIs. The axes span
    every point and the window."""
    arrays = [np.asarray(d, float).reshape(-1, 2) for _, _, d in diagrams]
    finite = [d[np.isfinite(d).all(axis=1)].ravel() for d in arrays if len(d)]
    if window is not None:
        finite += [np.asarray(_window_polygon(window), float).ravel()]
    values = np.concatenate(finite) if finite else np.zeros(1)
    lo, hi = float(min(values.min(), 0.0)), float(max(values.max(), 1e-6))
    pad = 0.05 * (hi - lo)
    inf_level = hi + 2 * pad
    data: list[dict] = [dict(type="scattergl", x=[lo - pad, inf_level], y=[lo - pad, inf_level],
                             mode="lines", line=dict(color="#999", width=1), name="diagonal",
                             hoverinfo="skip", showlegend=False)]
    if window is not None:
        data.append(_window_trace(window))
    shown = most_persistent(arrays, max_points)
    for (label, colour, _), full, keep in zip(diagrams, arrays, shown, strict=True):
        if len(full):
            data.append(_points_trace(label, colour, full, keep,
                                      infinite_at=(inf_level, lo - 2 * pad)))
    shapes, annotations = [], []
    if any((~np.isfinite(d[:, 1])).any() for d in arrays if len(d)):
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=inf_level, y1=inf_level,
                           line=dict(color="#bbb", dash="dash", width=1)))
        annotations.append(dict(xref="paper", x=1, y=inf_level, text="∞", showarrow=False,
                                xanchor="left"))
    total = sum(len(d) for d in arrays)
    layout = dict(title=dict(text=_shown_title(title, sum(map(len, shown)), total)),
                  xaxis=dict(title=dict(text=f"birth ({units})")),
                  yaxis=dict(title=dict(text=f"death ({units})")),
                  height=480, margin=dict(l=55, r=20, t=60, b=45), shapes=shapes,
                  annotations=annotations, legend=dict(font=dict(size=11)))
    return dict(data=data, layout=layout)


def _window_trace(window: tuple[float, float, float, float]) -> dict:
    """The PI window's outline in birth × death (:func:`diagram_spec`), filled, with a hover
    that says what lies outside it."""
    x0, x1, y0, y1 = window
    xs, ys = _window_polygon(window)
    return dict(
        type="scatter", x=xs, y=ys, mode="lines", fill="toself",
        fillcolor="rgba(255, 160, 0, 0.08)", line=dict(color="#e69500", width=1.5, dash="dot"),
        name=f"{WINDOW_NAME}: outside adds ~nothing",
        hoveron="fills+points",
        hovertemplate=(f"PI window: birth in [{x0:g}, {x1:g}], persistence in [{y0:g}, "
                       f"{y1:g}]<br>points outside it add only Gaussian tails (≈ 0) "
                       "to the PIs<extra></extra>"))


DIMENSION_SYMBOLS = {"H0": "circle", "H1": "diamond"}


def _points_trace(label: str, colour: str, full: np.ndarray, keep,
                  infinite_at: tuple[float, float]) -> dict:
    """One diagram's shown points ``full[keep]`` (:func:`diagram_spec`): essential bars drawn
    at ``infinite_at[0]`` (death +∞) or ``infinite_at[1]`` (−∞, a superlevel filtration's)."""
    dgm = full[keep]
    ess = ~np.isfinite(dgm[:, 1])
    y = np.where(ess, infinite_at[0] if np.all(dgm[ess, 1] > 0) else infinite_at[1], dgm[:, 1])
    dim = label.split()[-1] if label.split()[-1] in DIMENSION_SYMBOLS else "H0"
    count = f"{len(full):,}" if len(dgm) == len(full) else f"{len(dgm):,} of {len(full):,}"
    return dict(
        type="scattergl", x=dgm[:, 0], y=y, mode="markers", name=f"{label} ({count})",
        marker=dict(color=COLOURS.get(colour, colour), symbol=DIMENSION_SYMBOLS[dim], size=7,
                    opacity=0.75, line=dict(width=0.5, color="white")),
        text=np.where(ess, "∞", np.char.mod("%.4f", dgm[:, 1])).tolist(),
        customdata=np.where(ess, np.nan, persistence(dgm)),
        hovertemplate="birth %{x:.4f}<br>death %{text}<br>persistence %{customdata:.4f}"
                      "<extra>" + label + "</extra>")


def diagram_figure(diagrams: list[tuple[str, str, np.ndarray]], title: str,
                   max_points: int = MAX_DIAGRAM_POINTS,
                   window: tuple[float, float, float, float] | None = None,
                   units: str = UNITS) -> go.Figure:
    """:func:`diagram_spec` as a validated plotly figure."""
    return go.Figure(diagram_spec(diagrams, title, max_points, window, units))


def _grid_domains(n: int, gap: float) -> list[list[float]]:
    """``n`` equal [start, end] paper-coordinate domains separated by ``gap``, first first."""
    size = (1 - gap * (n - 1)) / n
    return [[i * (size + gap), i * (size + gap) + size] for i in range(n)]


def heatmap_grid_spec(images: np.ndarray, titles: list[str], title: str,
                      axes: tuple[np.ndarray, np.ndarray] | None = None,
                      columns: int = 2, units: str = UNITS) -> dict:
    """Plotly JSON (plain dict) of a grid of heatmaps, row 0 of each image drawn at the top,
    ``columns`` per row (2 keeps each readable on a phone). ``axes`` = (each column's birth,
    each row's persistence, the top row first: a PI's pixel centres, as
    :func:`~tgd_core.topology.representation.pi_axes` gives them) labels the axes in diagram
    units; without them, in pixels. One colour scale from 0
    to the largest value of all the images (one colour bar is true for every panel), so an
    all-zero image is the lowest colour; its title says "empty"."""
    images = [np.asarray(img, float) for img in images]
    cols = max(1, min(columns, len(images)))
    rows = math.ceil(len(images) / cols)
    top = max((float(img.max()) for img in images if img.size), default=0.0)
    x_domains = _grid_domains(cols, 0.08)
    y_domains = _grid_domains(rows, 0.6 / (rows * 2.5))[::-1]  # first row at the top
    data, layout = [], dict(
        title=dict(text=title), height=250 * rows + 90, margin=dict(l=55, r=20, t=80, b=45),
        coloraxis=dict(colorscale="Viridis", cmin=0.0, cmax=top if top > 0 else 1.0,
                       colorbar=dict(title=dict(text="value"), thickness=12)),
        annotations=[])
    for i, (img, name) in enumerate(zip(images, titles, strict=True)):
        r, c = divmod(i, cols)
        ax = "" if i == 0 else str(i + 1)
        trace = dict(type="heatmap", z=img.astype(np.float32), coloraxis="coloraxis",
                     xaxis=f"x{ax}", yaxis=f"y{ax}",
                     hovertemplate="birth %{x:.3f}<br>persistence %{y:.3f}<br>value %{z:.4g}"
                                   "<extra>" + name + "</extra>")
        if axes is not None:
            trace.update(x=np.asarray(axes[0], float), y=np.asarray(axes[1], float))
        data.append(trace)
        xaxis = dict(domain=x_domains[c], anchor=f"y{ax}", nticks=4, tickformat=".2f",
                     title=dict(text=f"birth ({units})" if r == rows - 1 else ""))
        yaxis = dict(domain=y_domains[r], anchor=f"x{ax}", nticks=4, tickformat=".2f",
                     title=dict(text="persistence" if c == 0 else ""))
        if axes is None:
            yaxis.update(autorange="reversed", tickformat="d")
            xaxis.update(tickformat="d", title=dict(text=""))
        layout[f"xaxis{ax}"], layout[f"yaxis{ax}"] = xaxis, yaxis
        empty = not np.any(img)
        layout["annotations"].append(dict(
            text=f"{name} — empty (all zero)" if empty else name, showarrow=False,
            xref="paper", yref="paper", x=sum(x_domains[c]) / 2, y=y_domains[r][1],
            xanchor="center", yanchor="bottom", font=dict(size=13)))
    return dict(data=data, layout=layout)


def heatmap_grid(images: np.ndarray, titles: list[str], title: str,
                 axes: tuple[np.ndarray, np.ndarray] | None = None,
                 columns: int = 2, units: str = UNITS) -> go.Figure:
    """:func:`heatmap_grid_spec` as a validated plotly figure."""
    return go.Figure(heatmap_grid_spec(images, titles, title, axes, columns, units))


PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f")


def _layout(fig: go.Figure, title: str, height: int, **kw) -> go.Figure:
    """Title, height and the app's template and margins (``kw`` may override them)."""
    fig.update_layout(**{"title": title, "height": height, "template": "plotly_white",
                         "margin": dict(l=50, r=20, t=60, b=40), **kw})
    return fig


TRUE_CLASS_FILL = "rgba(44, 160, 44, 0.15)"


def probability_bars(probs: dict[str, np.ndarray], classes: list[str] | tuple[str, ...],
                     title: str, true_class: str | None = None) -> go.Figure:
    """Grouped bars: each model's class probabilities (one 1-D array per model); the
    ``true_class``, when known, shaded and labelled "true class"."""
    fig = go.Figure()
    for i, (name, p) in enumerate(probs.items()):
        fig.add_trace(go.Bar(x=list(classes), y=np.asarray(p, float), name=name,
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>"))
    if true_class is not None:
        k = list(classes).index(true_class)
        fig.add_vrect(x0=k - 0.5, x1=k + 0.5, fillcolor=TRUE_CLASS_FILL, line_width=0,
                      layer="below", annotation_text="true class",
                      annotation_position="top left")
    fig.update_yaxes(range=[0, 1], title="probability")
    return _layout(fig, title, 380, barmode="group", legend=dict(orientation="h", y=-0.2))


def accuracy_vs_severity(rows: list[dict], title: str) -> go.Figure:
    """Accuracy (%) against severity, one line per ``row["model"]``."""
    fig = go.Figure()
    for i, name in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == name]
        fig.add_trace(go.Scatter(
            x=[r["severity"] for r in mine], y=[r["accuracy"] for r in mine],
            mode="lines+markers", name=name, line=dict(color=PALETTE[i % len(PALETTE)]),
            customdata=[r["ece"] for r in mine],
            hovertemplate="severity %{x}: %{y:.1f} %<br>ECE %{customdata:.3f}"
                          "<extra>" + name + "</extra>"))
    fig.update_xaxes(title="severity (0 = clean)", dtick=1)
    fig.update_yaxes(title="accuracy (%)", rangemode="tozero")
    return _layout(fig, title, 380)


def reliability_diagrams(panels: dict[str, dict[str, list]], title: str) -> go.Figure:
    """One panel per key of ``panels`` (e.g. a condition), each mapping a model name to its
    reliability bins (objects with lower, upper, count, confidence, accuracy): per-bin
    accuracy against confidence, with the diagonal of perfect calibration."""
    names = list(dict.fromkeys(m for models in panels.values() for m in models))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=list(panels),
                        horizontal_spacing=0.08)
    for col, models in enumerate(panels.values(), start=1):
        fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", showlegend=False,
                                 line=dict(color="#999", dash="dash"), hoverinfo="skip"),
                      row=1, col=col)
        for name, bins in models.items():
            full = [b for b in bins if b.count]
            colour = PALETTE[names.index(name) % len(PALETTE)]
            fig.add_trace(go.Scatter(
                x=[b.confidence for b in full], y=[b.accuracy for b in full],
                mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                line=dict(color=colour), marker=dict(size=[4 + 10 * np.sqrt(b.count / max(
                    sum(c.count for c in full), 1)) for b in full]),
                customdata=[[b.lower, b.upper, b.count] for b in full],
                hovertemplate="bin (%{customdata[0]:.2f}, %{customdata[1]:.2f}]: "
                              "%{customdata[2]} images<br>confidence %{x:.3f}<br>"
                              "accuracy %{y:.3f}<extra>" + name + "</extra>"), row=1, col=col)
    fig.update_xaxes(title="confidence", range=[-0.03, 1.03])
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.update_yaxes(title="accuracy", row=1, col=1)
    return _layout(fig, title, 420, legend=dict(orientation="h", y=-0.25))


def png_data_uri(image: np.ndarray) -> str:
    """An H×W×3 uint8 image as a ``data:image/png;base64,...`` URI (a few KB for thumbnails,
    where a plotted array would ship every pixel as a JSON number)."""
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, "PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _thumbnail_strip(images: np.ndarray, vertical: bool, side: int) -> go.Image:
    """The batch's images, ``side`` pixels square, side by side (or stacked) as one Image
    trace whose image k spans [k − 0.5, k + 0.5] on its axis: cell k of a b×b map lines up
    with image k."""
    from PIL import Image

    thumbs = [np.asarray(Image.fromarray(np.asarray(im, np.uint8)).resize((side, side),
                                                                          Image.BOX))
              for im in images]
    step = 1.0 / side  # one pixel, in image units
    strip = np.concatenate(thumbs, axis=0 if vertical else 1)
    return go.Image(source=png_data_uri(strip), x0=-0.5 + step / 2, y0=-0.5 + step / 2,
                    dx=step, dy=step, hoverinfo="skip")


def _short(label: str, width: int = 14) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def similarity_grid(maps: dict[str, list[np.ndarray]], title: str,
                    images: np.ndarray | None = None,
                    labels: list[str] | None = None) -> go.Figure:
    """b×b similarity maps: one row per group, one column per network (shared colour scale).
    With the batch's ``images`` (b×H×W×3 uint8), a strip of thumbnails runs above each column
    and beside each row, aligned with the maps' cells; ``labels`` (one per image, e.g. its
    class) name the rows and columns of the maps. Thumbnails are drawn at about the size of a
    map cell (8–32 px), which keeps the figure small (~0.4 MB for 32 images)."""
    columns = list(maps)
    groups = max(len(m) for m in maps.values())
    b = len(next(iter(maps.values()))[0])
    labels = [_short(x) for x in labels] if labels is not None else [str(i) for i in range(b)]
    off = int(images is not None)  # the thumbnail row and column come first
    per_cell = max(230, 12 * b)  # px per map: a 32-image batch still shows 12 px per image
    strip_px = 40 * off
    fig = make_subplots(
        rows=groups + off, cols=len(columns) + off, shared_xaxes="columns",
        shared_yaxes="rows", horizontal_spacing=0.02, vertical_spacing=0.02,
        row_heights=[strip_px] * off + [per_cell] * groups,
        column_widths=[strip_px] * off + [per_cell] * len(columns),
        subplot_titles=[""] * off + columns)  # the first row's cells: the column titles
    zmax = float(max(np.max(x) for v in maps.values() for x in v))
    for c, name in enumerate(columns):
        for g, m in enumerate(maps[name]):
            fig.add_trace(_similarity_heatmap(m, zmax, f"{name} · group {g + 1}",
                                              scale=c == 0 and g == 0),
                          row=g + 1 + off, col=c + 1 + off)
    for g in range(groups):
        fig.update_yaxes(title_text=f"group {g + 1}", row=g + 1 + off, col=1)
    _similarity_axes(fig, labels, last_row=groups + off)
    if images is not None:
        _add_thumbnail_strips(fig, images, len(columns), groups, side=int(
            np.clip(per_cell // b, 8, 32)))
    return _layout(fig, title, per_cell * groups + strip_px + 160,
                   margin=dict(l=110, r=20, t=90, b=110))


def _similarity_heatmap(m: np.ndarray, zmax: float, name: str, *, scale: bool) -> go.Heatmap:
    """One b×b map on the grid's shared colour scale (``scale``: draw the colour bar)."""
    return go.Heatmap(z=np.asarray(m, float), colorscale="Viridis", zmin=0, zmax=zmax,
                      showscale=scale, colorbar=dict(title="G̃", len=0.5),
                      hovertemplate="image %{y} × image %{x}: %{z:.4f}<extra>" + name
                                    + "</extra>")


def _similarity_axes(fig: go.Figure, labels: list[str], *, last_row: int) -> None:
    """Every map's axes span its b cells (row 0 on top); only the bottom row and the left
    column carry the images' labels."""
    b = len(labels)
    ticks = dict(tickmode="array", tickvals=list(range(b)), ticktext=labels,
                 tickfont=dict(size=9))
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False,
                     range=[-0.5, b - 0.5])
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False,
                     range=[b - 0.5, -0.5])
    fig.update_xaxes(showticklabels=True, tickangle=-60, row=last_row, **ticks)
    fig.update_yaxes(showticklabels=True, col=1, **ticks)


def _add_thumbnail_strips(fig: go.Figure, images: np.ndarray, columns: int, groups: int, *,
                          side: int) -> None:
    """The batch's thumbnails above each map column (row 1) and beside each group's row
    (column 1), ``side`` px each; the strips' other axis is one image tall (wide), unlabelled."""
    for c in range(columns):
        fig.add_trace(_thumbnail_strip(images, False, side), row=1, col=c + 2)
    for g in range(groups):
        fig.add_trace(_thumbnail_strip(images, True, side), row=g + 2, col=1)
    fig.update_yaxes(range=[0.5, -0.5], showticklabels=False, row=1)
    fig.update_xaxes(range=[-0.5, 0.5], showticklabels=False, col=1)


CURVE_MARKER_SIZE = 9  # a 1-epoch run is one point per curve: it must read as a mark


def training_curves(rows: list[dict], title: str) -> go.Figure:
    """Loss terms (``train_*`` except accuracy) and accuracies per epoch, side by side, as
    lines with markers on whole-epoch ticks (a 1-epoch run shows one clear mark per curve)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["loss", "accuracy (%)"],
                        horizontal_spacing=0.1)
    epochs = [r.get("epoch") for r in rows]
    loss_keys = list(dict.fromkeys(k for r in rows for k in r
                                   if k.startswith("train_") and k != "train_accuracy"))
    acc_keys = [k for k in ("train_accuracy", "test_accuracy") if any(k in r for r in rows)]
    for col, keys in ((1, loss_keys), (2, acc_keys)):
        for i, key in enumerate(keys):
            fig.add_trace(go.Scatter(x=epochs, y=[r.get(key) for r in rows],
                                     mode="lines+markers", name=key,
                                     marker=dict(size=CURVE_MARKER_SIZE),
                                     line=dict(color=PALETTE[(i + 3 * (col - 1)) % 8])),
                          row=1, col=col)
    known = [e for e in epochs if isinstance(e, int | float)]
    span = (max(known) - min(known)) if known else 0
    fig.update_xaxes(title="epoch", tickmode="linear", dtick=max(1, math.ceil(span / 10)),
                     range=[min(known) - 0.5, max(known) + 0.5] if known and span < 2 else None)
    return _layout(fig, title, 360)
