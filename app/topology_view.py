"""View 1 — Topology explorer: persistence diagrams and images of an uploaded image."""

from __future__ import annotations

import gradio as gr
import numpy as np

from app.plots import diagram_figure, heatmap_grid
from tgd_core.errors import TGDError
from tgd_core.images import as_image_batch
from tgd_core.topology import PaperPIConfig
from tgd_core.topology.cubical import CubicalConfig
from tgd_core.topology.pimage import PersistenceImageConfig
from tgd_core.topology.representation import CubicalPIConfig, summarise

MIN_SIDE, MAX_SIDE = 2, 1024


def prepare_image(image) -> tuple[np.ndarray, list[str]]:
    """Check an uploaded image; return it as H×W×3 uint8 with notes on any conversion."""
    if image is None:
        raise TGDError("upload an image, or pick one of the examples")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise TGDError(f"not an image: array of shape {arr.shape}")
    h, w = arr.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise TGDError(f"image of {w}×{h} pixels is too small (at least {MIN_SIDE} per side)")
    if max(h, w) > MAX_SIDE:
        raise TGDError(f"image of {w}×{h} pixels is too large (at most {MAX_SIDE} per side)")
    notes = []
    channels = arr.shape[2] if arr.ndim == 3 else 1
    if channels == 1:
        notes.append("grey image: its channel is used as R, G and B")
    elif channels == 4:
        notes.append("RGBA image: the alpha channel is ignored")
    batch = as_image_batch(arr, channels=3)
    if batch.dtype != np.uint8:
        batch = np.clip(np.round(batch * 255 if batch.max() <= 1 else batch), 0, 255)
        batch = batch.astype(np.uint8)
        notes.append("float pixels were converted to 0–255")
    return batch[0], notes


def representation(mode, resolution, spread, max_bd, threshold, homology, filtration,
                   channels, construction, sigma, pers_max):
    if mode == "paper":
        return PaperPIConfig((int(resolution),) * 2, float(spread), 0.0, float(max_bd),
                             float(threshold))
    dims = tuple(int(h[1]) for h in homology) or (0,)
    return CubicalPIConfig(
        CubicalConfig(dims, filtration, channels, construction),
        PersistenceImageConfig((0.0, 1.0), (0.0, float(pers_max)), (int(resolution),) * 2,
                               float(sigma), "linear"))


def explore(image, mode="paper", resolution=50, spread=0.01, max_bd=0.3, threshold=0.02,
            homology=("H0", "H1"), filtration="sublevel", channels="rgb", construction="top",
            sigma=0.02, pers_max=1.0):
    """Handler: (diagram figure, PI figure, Markdown summary) for one image."""
    try:
        rgb, notes = prepare_image(image)
        rep = representation(mode, resolution, spread, max_bd, threshold, homology, filtration,
                             channels, construction, sigma, pers_max)
        summary = summarise(rgb, rep)
    except TGDError as exc:
        raise gr.Error(str(exc)) from None
    h, w = rgb.shape[:2]
    title = ("paper mode: H0 of row/column scans" if mode == "paper"
             else f"cubical mode: {filtration} persistence")
    dfig = diagram_figure(summary.diagrams, f"Persistence diagrams — {title}")
    titles = [label for label, _, _ in summary.diagrams]
    pfig = heatmap_grid(summary.pi_raw, titles, "Persistence images (before max normalisation)",
                        extent=summary.extent)
    counts = ", ".join(f"{label}: {len(d)}" for label, _, d in summary.diagrams)
    lines = [f"**{w}×{h} image** — diagrams and {len(titles)} PIs in "
             f"**{summary.seconds * 1000:.1f} ms**.", "", f"Points per diagram: {counts}."]
    if mode == "paper":
        lines.append(f"Bars with persistence > {threshold} kept; window [0, {max_bd}]², "
                     f"σ = {spread}, {int(resolution)}×{int(resolution)} pixels.")
    lines += [f"> {n}" for n in notes]
    return dfig, pfig, "\n".join(lines)


def build(examples: list[str]) -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = gr.Image(label="Image", type="numpy", image_mode=None, height=260,
                             elem_id="topology-image")
            if examples:
                gr.Examples(examples, inputs=image, label="CIFAR-10 test images")
            mode = gr.Radio(["paper", "cubical"], value="paper", label="Mode",
                            info="paper: the authors' 1-D row/column H0; cubical: 2-D H0/H1")
            resolution = gr.Slider(8, 100, value=50, step=1, label="PI resolution")
            with gr.Group(visible=True) as paper_box:
                spread = gr.Slider(0.002, 0.05, value=0.01, step=0.001, label="σ (spread)")
                max_bd = gr.Slider(0.05, 1.0, value=0.3, step=0.01, label="window max")
                threshold = gr.Slider(0.0, 0.2, value=0.02, step=0.005,
                                      label="persistence threshold")
            with gr.Group(visible=False) as cubical_box:
                homology = gr.CheckboxGroup(["H0", "H1"], value=["H0", "H1"], label="homology")
                filtration = gr.Radio(["sublevel", "superlevel"], value="sublevel",
                                      label="filtration")
                channels = gr.Radio(["rgb", "grey"], value="rgb", label="channels")
                construction = gr.Radio(["top", "vertex"], value="top",
                                        label="pixels as cubes (top) or vertices")
                sigma = gr.Slider(0.005, 0.1, value=0.02, step=0.005, label="σ")
                pers_max = gr.Slider(0.1, 1.0, value=1.0, step=0.05, label="persistence max")
            run = gr.Button("Compute", variant="primary", elem_id="topology-run")
        with gr.Column(scale=2):
            info = gr.Markdown(elem_id="topology-info")
            diagram_plot = gr.Plot(label="Persistence diagrams", elem_id="topology-diagrams")
            pi_plot = gr.Plot(label="Persistence images", elem_id="topology-pis")

    def toggle(m):
        return gr.update(visible=m == "paper"), gr.update(visible=m == "cubical"), \
            gr.update(value=50 if m == "paper" else 32)

    mode.change(toggle, mode, [paper_box, cubical_box, resolution])
    inputs = [image, mode, resolution, spread, max_bd, threshold, homology, filtration, channels,
              construction, sigma, pers_max]
    outputs = [diagram_plot, pi_plot, info]
    run.click(explore, inputs, outputs, api_name="explore")
    image.upload(explore, inputs, outputs, api_name=False)
    for control in inputs[1:]:
        control.change(lambda *a: explore(*a) if a[0] is not None else (None, None, ""),
                       inputs, outputs, api_name=False, show_progress="hidden")
