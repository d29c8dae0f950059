"""View 1 — Topology explorer: persistence diagrams and images of an uploaded image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from app.common import prepare_image
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
    with ``overrides`` by control key (for calls from Python and tests)."""
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


def explore(image, *controls):
    """Handler: (diagram figure, PI figure, Markdown summary) for one image; ``controls``:
    the mode, then the :data:`CONTROLS` values (see :func:`control_values`)."""
    try:
        rgb, notes = prepare_image(image)
        rep = representation(*controls)
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
    counts = ", ".join(f"{label}: {len(d)}" for label, _, d in summary.diagrams)
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
    inputs = [image, mode, *(components[c.key] for c in CONTROLS)]
    outputs = [diagram_plot, pi_plot, info]
    run.click(explore, inputs, outputs, api_name="explore")
    image.upload(explore, inputs, outputs, api_name=False)
    for control in inputs[1:]:
        control.change(lambda *a: explore(*a) if a[0] is not None else (None, None, ""),
                       inputs, outputs, api_name=False, show_progress="hidden")
