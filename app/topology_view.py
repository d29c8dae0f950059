"""View 1 — Topology explorer: persistence diagrams and images of an uploaded image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from app.common import MIN_SIDE, prepare_image
from app.inputs import NumberField, choice
from app.plots import diagram_figure, heatmap_grid
from tgd_core.core.errors import TGDError
from tgd_core.topology import PaperPIConfig, schema
from tgd_core.topology.representation import (
    Representation,
    representation_from_values,
    summarise,
)

MODE = "Mode"
MODES = tuple(schema.MODES)  # the mode radio's choices, the first is the default
#: The longest side, in pixels, an upload is downscaled to before its topology is computed
#: (a photo at full size has ~300,000 diagram points and takes seconds).
ANALYSIS_SIZE = NumberField("Analysis size (longest side, px)", integer=True, ge=16, le=1024)
DEFAULT_ANALYSIS_SIZE = 128
MAX_UPLOAD_PIXELS = 40_000_000  # a decoded upload larger than this is refused, not downscaled


@dataclass(frozen=True)
class TopologyControl:
    """One explorer control (a :class:`schema.Control`) and the schema parameters it sets:
    the same-named parameter of each section that declares the control (e.g. the PI
    resolution of both modes)."""

    control: schema.Control
    params: tuple[schema.Param, ...]

    @property
    def key(self) -> str:
        return self.control.key

    @property
    def modes(self) -> tuple[str, ...]:
        """The representation modes this control applies to."""
        sections = {p.section for p in self.params}
        return tuple(m for m, read in schema.MODES.items() if sections & set(read))

    @property
    def options(self) -> tuple[str, ...]:
        """The offered choices as shown (empty for numbers)."""
        return tuple(self.control.choice_label(c) for c in self.params[0].choices)

    @property
    def field(self) -> NumberField:
        """The numeric field: the control's label and bounds."""
        c = self.control
        return NumberField(c.label, self.params[0].type is int, ge=c.ge, le=c.le)

    def default(self, mode: str) -> Any:
        """The control's value for the schema default of ``mode`` (of the first parameter
        when the control does not apply to ``mode``)."""
        p = next((p for p in self.params if p.section in schema.MODES.get(mode, ())),
                 self.params[0])
        if p.shape == "subset":
            return [self.control.choice_label(c) for c in p.default]
        if p.shape == "scalar" and p.choices:
            return self.control.choice_label(p.default)
        return p.default[-1] if p.shape in ("per_side", "range") else p.default

    def values(self, value: Any) -> dict[str, Any]:
        """``{param key: engine value}`` for a control value; TGDError naming the control when
        the value is not one it offers."""
        p, label = self.params[0], self.control.label
        if p.shape == "subset":  # none ticked: the first choice
            picked = [self.options.index(choice(v, self.options, label)) for v in value or ()]
            engine = tuple(p.choices[i] for i in picked) or p.choices[:1]
        elif p.choices:
            engine = p.choices[self.options.index(choice(value, self.options, label))]
        else:
            engine = self.field.check(value)
            if self.control.high_end:
                engine = (p.default[0], engine)
        return {q.key: engine for q in self.params}

    def component(self):
        """The gradio component: a slider, radio or checkbox group, on the paper default
        where the control applies to paper mode."""
        value, label = self.default(MODES[0]), self.control.label
        if self.params[0].shape == "subset":
            return gr.CheckboxGroup(list(self.options), value=value, label=label)
        if self.options:
            return gr.Radio(list(self.options), value=value, label=label)
        return self.field.slider(value, self.control.step)


def _controls() -> tuple[TopologyControl, ...]:
    """The explorer's controls in schema order, one per :class:`schema.Control` key."""
    by_key: dict[str, list[schema.Param]] = {}
    for p in schema.PARAMETERS:
        if p.control is not None:
            by_key.setdefault(p.control.key, []).append(p)
    return tuple(TopologyControl(ps[0].control, tuple(ps)) for ps in by_key.values())


#: The controls after the mode radio, in the order the handler takes their values.
CONTROLS = _controls()


def control_values(mode: str = MODES[0], **overrides: Any) -> list[Any]:
    """The handler's control arguments: ``mode`` then each control's default for that mode,
    with ``overrides`` by control key (for calls from Python and tests). The /explore API takes
    the analysis size after them (optional: :data:`DEFAULT_ANALYSIS_SIZE`)."""
    unknown = set(overrides) - {c.key for c in CONTROLS}
    if unknown:
        raise TypeError(f"unknown topology control(s) {sorted(unknown)}")
    return [mode, *(overrides.get(c.key, c.default(mode)) for c in CONTROLS)]


def representation(mode: Any = None, *values: Any) -> Representation:
    """The PI configuration the controls describe (``values`` in :data:`CONTROLS` order);
    TGDError naming a control out of range or not one of its choices. Controls of the other
    mode are not read."""
    mode = choice(mode, MODES, MODE)
    if len(values) != len(CONTROLS):
        raise TGDError(f"expected {len(CONTROLS)} control values after the mode, got "
                       f"{len(values)}")
    engine: dict[str, Any] = {}
    for control, value in zip(CONTROLS, values, strict=True):
        if mode in control.modes:
            engine.update(control.values(value))
    return representation_from_values(mode, engine)


def _settings_line(rep: Representation) -> list[str]:
    """The paper-mode settings as a Markdown line (cubical mode: none)."""
    if not isinstance(rep, PaperPIConfig):
        return []
    cols, rows = rep.resolution
    return [f"Bars with persistence > {rep.threshold} kept; window [0, {rep.max_bd}]², "
            f"σ = {rep.spread}, {cols}×{rows} pixels."]


def analysis_shape(width: int, height: int, longest: int) -> tuple[int, int]:
    """(width, height) with the longest side at most ``longest``, the aspect kept (a short
    side never below :data:`MIN_SIDE` unless it was already)."""
    scale = min(1.0, longest / max(width, height))
    return tuple(max(round(side * scale), min(side, MIN_SIDE)) for side in (width, height))


def downscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (H×W or H×W×C, any numeric dtype) resized to ``size`` = (width, height) with
    Lanczos, channel by channel, in its own dtype and value range."""
    planes = image[..., None] if image.ndim == 2 else image
    resized = np.stack([np.asarray(Image.fromarray(planes[..., c].astype(np.float32))
                                   .resize(size, Image.LANCZOS, reducing_gap=3.0))
                        for c in range(planes.shape[-1])], axis=-1)
    resized = np.clip(resized, image.min(), image.max())
    if not np.issubdtype(image.dtype, np.floating):
        resized = np.round(resized)
    resized = resized.astype(image.dtype)
    return resized[..., 0] if image.ndim == 2 else resized


def analysis_image(image: Any, longest: int) -> tuple[np.ndarray, list[str]]:
    """An upload checked (:func:`prepare_image`) after downscaling it to at most ``longest``
    pixels per side, with notes on every conversion; TGDError for an upload over
    :data:`MAX_UPLOAD_PIXELS`."""
    arr = None if image is None else np.asarray(image)
    if arr is None or arr.ndim not in (2, 3) or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        return prepare_image(arr)  # refuses what is not an image, with its message
    h, w = arr.shape[:2]
    if h * w > MAX_UPLOAD_PIXELS:
        raise TGDError(f"image of {w}×{h} pixels is too large to analyse (at most "
                       f"{MAX_UPLOAD_PIXELS // 1_000_000} megapixels)")
    size = analysis_shape(w, h, longest)
    if size == (w, h):
        return prepare_image(arr)
    rgb, notes = prepare_image(downscale(arr, size))
    return rgb, [f"Analysed at {size[0]}×{size[1]} (original {w}×{h}); "
                 f"*{ANALYSIS_SIZE.label}* sets the size.", *notes]


def _split_arguments(values: tuple) -> tuple[tuple, int]:
    """The handler's arguments after the image as (mode and control values, analysis size);
    the analysis size is optional (default :data:`DEFAULT_ANALYSIS_SIZE`). TGDError when their
    number is neither."""
    n = len(CONTROLS) + 1
    if len(values) == n:
        return values, DEFAULT_ANALYSIS_SIZE
    if len(values) != n + 1:
        raise TGDError(f"expected the mode, {len(CONTROLS)} control values and (optionally) "
                       f"the analysis size after the image, got {len(values)} values")
    return values[:-1], ANALYSIS_SIZE.check(values[-1])


def explore(image, *values):
    """Handler: (diagram figure, PI figure, Markdown summary) for one image; ``values``: the
    mode, the :data:`CONTROLS` values (see :func:`control_values`), then optionally the
    analysis size — the /explore API order."""
    try:
        controls, longest = _split_arguments(values)
        rep = representation(*controls)
        rgb, notes = analysis_image(image, longest)
        summary = summarise(rgb, rep)
    except TGDError as exc:
        raise gr.Error(str(exc)) from None
    mode = controls[0]
    h, w = rgb.shape[:2]
    title = ("paper mode: H0 of row/column scans" if mode == "paper"
             else f"cubical mode: {rep.cubical.filtration} persistence")
    dfig = diagram_figure(summary.diagrams, f"Persistence diagrams — {title}")
    titles = [label for label, _, _ in summary.diagrams]
    pfig = heatmap_grid(summary.pi_raw, titles, "Persistence images (before max normalisation)",
                        extent=summary.extent)
    counts = ", ".join(f"{label}: {len(d):,}" for label, _, d in summary.diagrams)
    lines = [f"**{w}×{h} image** — diagrams and {len(titles)} PIs in "
             f"**{summary.seconds * 1000:.1f} ms**.", "", f"Points per diagram: {counts}."]
    lines += _settings_line(rep)
    lines += [f"> {n}" for n in notes]
    return dfig, pfig, "\n".join(lines)


def build(examples: list[str]) -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context): the mode
    radio, the controls of both modes, then one group per mode shown while it is chosen."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = gr.Image(label="Image", type="numpy", image_mode=None, height=260,
                             elem_id="topology-image")
            if examples:
                gr.Examples(examples, inputs=image, label="CIFAR-10 test images")
            analysis_size = ANALYSIS_SIZE.slider(
                DEFAULT_ANALYSIS_SIZE, 16, elem_id="topology-analysis-size",
                info="larger images are downscaled to this before the topology is computed")
            mode = gr.Radio(list(MODES), value=MODES[0], label=MODE,
                            info="paper: the authors' 1-D row/column H0; cubical: 2-D H0/H1")
            components = {c.key: c.component() for c in CONTROLS if len(c.modes) > 1}
            groups = {}
            for m in MODES:
                with gr.Group(visible=m == MODES[0]) as groups[m]:
                    components.update({c.key: c.component() for c in CONTROLS
                                       if c.modes == (m,)})
            run = gr.Button("Compute", variant="primary", elem_id="topology-run")
        with gr.Column(scale=2):
            info = gr.Markdown(elem_id="topology-info")
            diagram_plot = gr.Plot(label="Persistence diagrams", elem_id="topology-diagrams")
            pi_plot = gr.Plot(label="Persistence images", elem_id="topology-pis")

    shared = [c for c in CONTROLS if len(c.modes) > 1]

    def toggle(m):
        """Show the chosen mode's group; shared controls take that mode's defaults."""
        return ([gr.update(visible=m == g) for g in groups]
                + [gr.update(value=c.default(m)) for c in shared])

    mode.change(toggle, mode, [*groups.values(), *(components[c.key] for c in shared)])
    inputs = [image, mode, *(components[c.key] for c in CONTROLS), analysis_size]
    outputs = [diagram_plot, pi_plot, info]
    run.click(explore, inputs, outputs, api_name="explore")
    image.upload(explore, inputs, outputs, api_name=False)
    for control in inputs[1:]:
        control.change(lambda *a: explore(*a) if a[0] is not None else (None, None, ""),
                       inputs, outputs, api_name=False, show_progress="hidden")
