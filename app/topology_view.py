"""View 1 — Topology explorer: persistence diagrams and images of an uploaded image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from app.common import (
    IMAGE_FIELD,
    StageTimer,
    guarded,
    image_upload,
    load_image,
    plot_output,
)
from app.inputs import NumberField, choice
from app.plots import diagram_spec, heatmap_grid_spec, window_counts
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
        if p.shape == "subset":
            if not isinstance(value, (list, tuple, type(None))):
                raise TGDError(f"{label}: expected the ticked options as a list, not "
                               f"{type(value).__name__}")
            picked = [self.options.index(choice(v, self.options, label)) for v in value or ()]
            if not picked:
                raise TGDError(f"{label}: tick at least one of {', '.join(self.options)}")
            engine = tuple(p.choices[i] for i in sorted(set(picked)))
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


def analysis_image(image: Any, longest: int) -> tuple[np.ndarray, list[str]]:
    """An upload (file path or array) decoded and checked (:func:`app.common.load_image`),
    downscaled to at most ``longest`` pixels per side, with notes on every conversion."""
    rgb, notes = load_image(image, longest)
    if notes and notes[0].startswith("Downscaled"):
        notes[0] += f" *{ANALYSIS_SIZE.label}* sets the size."
    return rgb, notes


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


def _grid_order(rep: Representation, n: int) -> list[int]:
    """The PIs' order in the two-column grid: paper mode one row per channel (row scan, column
    scan); cubical mode as computed (one row per channel: H0, H1)."""
    if isinstance(rep, PaperPIConfig) and n == 6:
        return [0, 3, 1, 4, 2, 5]
    return list(range(n))


def _summary_lines(rgb: np.ndarray, summary, rep: Representation, notes: list[str],
                   timer: StageTimer) -> list[str]:
    """The Markdown beside the plots: size, points, window, settings, stage times, notes."""
    h, w = rgb.shape[:2]
    counts = ", ".join(f"{label}: {len(d):,}" for label, _, d in summary.diagrams)
    inside, finite = window_counts(summary.diagrams, summary.extent)
    lines = [f"**{w}×{h} image** — diagrams and {len(summary.diagrams)} PIs in "
             f"**{summary.seconds * 1000:.1f} ms**.", "", f"- Points per diagram: {counts}.",
             f"- Inside the PI window (dotted outline): **{inside:,} of {finite:,}** finite "
             "points — the others add only Gaussian tails (≈ 0) to the PIs."]
    lines += [f"- {line}" for line in _settings_line(rep)]
    lines += [f"- Time: {timer.line()}.", ""]
    return lines + [f"> {n}" for n in notes]


def analyse(image, *values) -> tuple[dict, dict, tuple, StageTimer]:
    """The work of :func:`explore`, timed stage by stage: (diagram spec, PI grid spec, what
    :func:`_summary_lines` reads, the timer); TGDError for bad input."""
    timer = StageTimer()
    controls, longest = _split_arguments(values)
    rep = representation(*controls)
    with timer("decode"):
        rgb, notes = analysis_image(image, longest)
    with timer("topology"):
        summary = summarise(rgb, rep)
    mode = controls[0]
    title = ("paper mode: H0 of row/column scans" if mode == "paper"
             else f"cubical mode: {rep.cubical.filtration} persistence")
    with timer("figures"):
        dspec = diagram_spec(summary.diagrams, f"Persistence diagrams — {title}",
                             window=summary.extent)
        order = _grid_order(rep, len(summary.diagrams))
        pspec = heatmap_grid_spec(summary.pi_raw[order],
                                  [summary.diagrams[i][0] for i in order],
                                  "Persistence images (before max normalisation)",
                                  axes=_pixel_centres(rep, summary))
    return dspec, pspec, (rgb, summary, rep, notes), timer


def _pixel_centres(rep: Representation, summary) -> tuple[np.ndarray, np.ndarray] | None:
    """The PI plot's axes in diagram units: each pixel's centre; None (pixels) for maps tiled
    from patches, whose tiles each span the whole window."""
    if not isinstance(rep, PaperPIConfig) and rep.cubical.patches > 1:
        return None
    return summary.axes.births, summary.axes.persistences


@guarded
def explore(image, *values):
    """Handler: (diagram plot, PI plot, Markdown summary) for one image (an upload or an
    array; never a path a client names); ``values``: the mode, the :data:`CONTROLS` values
    (see :func:`control_values`), then optionally the analysis size — the /explore API order."""
    if isinstance(image, (str, Path)):
        raise TGDError(f"{IMAGE_FIELD}: send the image as an uploaded file, not a path")
    return explore_file(image, *values)


@guarded
def explore_file(image, *values):
    """:func:`explore` for this server's own files too (``image`` may be a path: the
    examples). The plots are serialised here (:func:`plot_output`), so the summary's times
    include it."""
    dspec, pspec, (rgb, summary, rep, notes), timer = analyse(image, *values)
    with timer("JSON"):
        dplot, pplot = plot_output(dspec), plot_output(pspec)
    return dplot, pplot, "\n".join(_summary_lines(rgb, summary, rep, notes, timer))


def explore_if_image(image, *values):
    """:func:`explore` when there is an image, else nothing (a control moved before any
    upload)."""
    return (None, None, "") if image is None else explore(image, *values)


#: The controls both modes read (each shows its mode's default while that mode is chosen).
SHARED = tuple(c for c in CONTROLS if len(c.modes) > 1)


def mode_defaults(mode: str, values: tuple) -> list[Any]:
    """``values`` (the :data:`CONTROLS` values) with the shared controls at ``mode``'s
    defaults."""
    return [c.default(mode) if c in SHARED else v for c, v in zip(CONTROLS, values, strict=True)]


def default_view(examples: list[str]) -> tuple[Any, Any, str]:
    """What the explorer shows on load: the first example analysed with the default controls
    (computed once, when the app is built), or nothing without examples."""
    if not examples:
        return None, None, ""
    return explore_file(examples[0], *control_values())


def build(examples: list[str]) -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context): the image with
    Compute under it (within view at 1440×900), the examples (a click analyses one), the
    analysis size, the mode radio, the controls of both modes, then one group per mode shown
    while it is chosen; the first example's result on load."""
    first_diagrams, first_pis, first_info = default_view(examples)
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            view = _input_column(examples)
        with gr.Column(scale=2):
            info = gr.Markdown(first_info, elem_id="topology-info")
            view.outputs = [gr.Plot(first_diagrams, label="Persistence diagrams",
                                    elem_id="topology-diagrams"),
                            gr.Plot(first_pis, label="Persistence images",
                                    elem_id="topology-pis"), info]
    _wire(view)


@dataclass
class _View:
    """The view's components: what the events read (``inputs``: image, mode, every control,
    analysis size), the groups shown per mode, the shared controls and the plots."""

    run: gr.Button
    inputs: list
    groups: dict[str, gr.Group]
    shared: list
    outputs: list | None = None


def _input_column(examples: list[str]) -> _View:
    """The left column: image, Compute, examples, analysis size, mode, controls."""
    image = image_upload(value=(examples or [None])[0], label="Image", height=260,
                         elem_id="topology-image")
    run = gr.Button("Compute", variant="primary", elem_id="topology-run")
    if examples:
        gr.Examples(examples, inputs=image, label="CIFAR-10 test images (click one)",
                    examples_per_page=12, elem_id="topology-examples")
    analysis_size = ANALYSIS_SIZE.slider(
        DEFAULT_ANALYSIS_SIZE, 16, elem_id="topology-analysis-size",
        info="larger images are downscaled to this before the topology is computed")
    mode = gr.Radio(list(MODES), value=MODES[0], label=MODE, elem_id="topology-mode",
                    info="paper: the authors' 1-D row/column H0; cubical: 2-D H0/H1")
    components = {c.key: c.component() for c in SHARED}
    groups = {}
    for m in MODES:
        with gr.Group(visible=m == MODES[0]) as groups[m]:
            components.update({c.key: c.component() for c in CONTROLS if c.modes == (m,)})
    return _View(run, [image, mode, *(components[c.key] for c in CONTROLS), analysis_size],
                 groups, [components[c.key] for c in SHARED])


def _wire(view: _View) -> None:
    """The events: Compute, a new image, a mode switch, a control's change."""
    image, mode, *controls = view.inputs

    @guarded
    def switch_mode(image_value, mode_value, *values):
        """Show the chosen mode's group, put the shared controls at its defaults and explore
        once with them (one event: no second computation from the controls' updates)."""
        mode_value = choice(mode_value, MODES, MODE)
        values = mode_defaults(mode_value, values[:len(CONTROLS)]) + list(values[len(CONTROLS):])
        return ([gr.update(visible=mode_value == g) for g in view.groups]
                + [gr.update(value=values[CONTROLS.index(c)]) for c in SHARED]
                + list(explore_if_image(image_value, mode_value, *values)))

    # preprocess=False: the handlers read every value as sent and check it themselves
    # (app.common.load_image, NumberField): one-sentence errors naming the field
    raw = dict(preprocess=False)
    inputs, outputs = view.inputs, view.outputs
    view.run.click(explore, inputs, outputs, api_name="explore", **raw)
    image.change(explore_if_image, inputs, outputs, api_name=False, **raw)  # upload, example
    mode.input(switch_mode, inputs, [*view.groups.values(), *view.shared, *outputs],
               api_name=False, trigger_mode="always_last", **raw)
    for control in controls:  # the mode's controls and the analysis size
        event = control.release if isinstance(control, gr.Slider) else control.input
        event(explore_if_image, inputs, outputs, api_name=False, show_progress="hidden",
              trigger_mode="always_last", **raw)
