"""View 1 — Topology explorer: persistence diagrams and images of an uploaded image."""

from __future__ import annotations

import gradio as gr
import numpy as np

from app.inputs import NumberField, choice
from app.plots import diagram_figure, heatmap_grid
from tgd_core.core.errors import TGDError
from tgd_core.data.images import as_image_batch
from tgd_core.topology import PaperPIConfig
from tgd_core.topology.cubical import CubicalConfig
from tgd_core.topology.pimage import PersistenceImageConfig
from tgd_core.topology.representation import CubicalPIConfig, summarise

MIN_SIDE, MAX_SIDE = 2, 1024
RESOLUTION = NumberField("PI resolution", integer=True, ge=8, le=100)
SPREAD = NumberField("σ (spread)", ge=0.002, le=0.05)
MAX_BD = NumberField("window max", ge=0.05, le=1.0)
THRESHOLD = NumberField("persistence threshold", ge=0.0, le=0.2)
SIGMA = NumberField("σ", ge=0.005, le=0.1)
PERS_MAX = NumberField("persistence max", ge=0.1, le=1.0)
MODE, HOMOLOGY = "Mode", "homology"
CUBICAL = ("filtration", "channels", "pixels as cubes (top) or vertices")  # cubical-mode radios
# radio/checkbox label -> its choices (the first is the default)
CHOICES = {MODE: ("paper", "cubical"), HOMOLOGY: ("H0", "H1"),
           CUBICAL[0]: ("sublevel", "superlevel"), CUBICAL[1]: ("rgb", "grey"),
           CUBICAL[2]: ("top", "vertex")}


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


def _radio(label: str, **kwargs) -> gr.Radio:
    """The radio of ``label`` over its :data:`CHOICES`, on the first."""
    options = CHOICES[label]
    return gr.Radio(list(options), value=options[0], label=label, **kwargs)


def representation(mode, resolution, spread, max_bd, threshold, homology, filtration,
                   channels, construction, sigma, pers_max):
    """The PI configuration the controls describe; TGDError naming a control out of range or
    not one of its choices."""
    mode = choice(mode, CHOICES[MODE], MODE)
    resolution = (RESOLUTION.check(resolution),) * 2
    if mode == "paper":
        return PaperPIConfig(resolution, SPREAD.check(spread), 0.0, MAX_BD.check(max_bd),
                             THRESHOLD.check(threshold))
    dims = tuple(int(choice(h, CHOICES[HOMOLOGY], HOMOLOGY)[1]) for h in homology or ())
    filtration, channels, construction = (
        choice(value, CHOICES[label], label)
        for value, label in zip((filtration, channels, construction), CUBICAL))
    return CubicalPIConfig(
        CubicalConfig(dims or (0,), filtration, channels, construction),
        PersistenceImageConfig((0.0, 1.0), (0.0, PERS_MAX.check(pers_max)), resolution,
                               SIGMA.check(sigma), "linear"))


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
            mode = _radio(MODE, info="paper: the authors' 1-D row/column H0; cubical: 2-D H0/H1")
            resolution = RESOLUTION.slider(50, 1)
            with gr.Group(visible=True) as paper_box:
                spread = SPREAD.slider(0.01, 0.001)
                max_bd = MAX_BD.slider(0.3, 0.01)
                threshold = THRESHOLD.slider(0.02, 0.005)
            with gr.Group(visible=False) as cubical_box:
                homology = gr.CheckboxGroup(list(CHOICES[HOMOLOGY]), value=list(CHOICES[HOMOLOGY]),
                                            label=HOMOLOGY)
                filtration, channels, construction = (_radio(label) for label in CUBICAL)
                sigma = SIGMA.slider(0.02, 0.005)
                pers_max = PERS_MAX.slider(1.0, 0.05)
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
