"""View 4 — Noise robustness: predictions on a corrupted image, sweeps over severities."""

from __future__ import annotations

from functools import lru_cache

import gradio as gr
import numpy as np

from app.common import guarded, image_upload, missing_teachers_note, network_image, zoo
from app.inputs import NumberField, choice
from app.plots import accuracy_vs_severity, probability_bars, reliability_diagrams
from tgd_core.core.errors import TGDError
from tgd_core.data.corruptions import CIFAR10C_EXTRA, CORRUPTIONS, FAMILIES, SEVERITIES
from tgd_core.data.datasets import CIFAR10_CLASSES, load_cifar10
from tgd_core.evaluation import inspection
from tgd_core.nets import model_zoo
from tgd_core.training.config import MAX_SEED

SWEEP_COLUMNS = ["model", "severity", "accuracy", "nll", "ece", "n"]
ZOOM = 5  # the 32×32 images are shown enlarged, pixel for pixel
SEVERITY = NumberField("Severity (0 = clean)", integer=True, ge=0, le=max(SEVERITIES))
RELIABILITY_SEVERITY = NumberField("Reliability diagram: severity beside clean", integer=True,
                                   ge=min(SEVERITIES), le=max(SEVERITIES))
NOISE_SEED = NumberField("Noise seed", integer=True, ge=0, le=MAX_SEED)
SWEEP_IMAGES = NumberField("Test images", integer=True, ge=10, le=1000)
SUBSET_SEED = NumberField("Subset seed", integer=True, ge=0, le=MAX_SEED)
CORRUPTION = "Corruption"
TRUE_CLASS = "True class (optional)"
UNKNOWN = "(not given)"
RECOGNISED_SPLIT = "test_lossless_1k"  # the app's CIFAR-10 examples come from this split
RIGHT, WRONG = "✓", "✗"


def corruption_choices() -> list[tuple[str, str]]:
    """(label, name) of every corruption the engine offers, family by family (noise, blur,
    weather, digital; CIFAR-10-C's 4 extra ones marked), then any without a family."""
    listed = [(family, name) for family, names in FAMILIES.items() for name in names
              if name in CORRUPTIONS]
    listed += [("other", n) for n in CORRUPTIONS if n not in {m for _, m in listed}]
    return [(f"{family} · {name.replace('_', ' ')}"
             f"{' (extra)' if name in CIFAR10C_EXTRA else ''}", name) for family, name in listed]


@lru_cache(maxsize=1)
def _recognised() -> dict[bytes, int]:
    """Pixels → label of the CIFAR-10 test images the app offers as examples ({} without
    the data)."""
    try:
        images, labels = load_cifar10(RECOGNISED_SPLIT)
    except TGDError:
        return {}
    return {img.tobytes(): int(y) for img, y in zip(images, labels, strict=True)}


def true_class(image: np.ndarray, picked) -> tuple[str | None, str]:
    """(the image's true class or None, where it comes from): the class the user picked, else
    the label of the CIFAR-10 test image with exactly these pixels, else unknown."""
    if picked not in (None, "", UNKNOWN):
        return choice(picked, CIFAR10_CLASSES, TRUE_CLASS, "classes"), "given"
    label = _recognised().get(np.ascontiguousarray(image, np.uint8).tobytes())
    return (None, "") if label is None else (CIFAR10_CLASSES[label], "CIFAR-10 test label")


def _verdict(predicted: str, truth: str | None) -> str:
    if truth is None:
        return ""
    return f" {RIGHT}" if predicted == truth else f" {WRONG}"


def _zoom(image: np.ndarray) -> np.ndarray:
    return image.repeat(ZOOM, axis=0).repeat(ZOOM, axis=1)


def _networks() -> tuple[dict[str, object], str]:
    entries = zoo()
    if not entries:
        raise TGDError(f"no checkpoints found in {model_zoo.checkpoint_dir()} nor the authors' "
                       f"students in {model_zoo.official_dir()}")
    return {e.name: model_zoo.load_network(e) for e in entries}, missing_teachers_note(entries)


@guarded
def predict(image, corruption: str = "gaussian_noise", severity: int = 3, seed: int = 0,
            truth: str | None = UNKNOWN):
    """Handler: (clean image, corrupted image, probability bars, Markdown summary). The
    summary marks each model's top-1 right (✓) or wrong (✗) when the true class is known
    (:func:`true_class`)."""
    corruption, severity = choice(corruption, CORRUPTIONS, CORRUPTION), SEVERITY.check(severity)
    seed = NOISE_SEED.check(seed)
    clean, notes = network_image(image)
    label, source = true_class(clean, truth)
    noisy = inspection.corrupt_image(clean, corruption, severity, seed)
    networks, missing = _networks()
    probs = {name: p[0] for name, p in inspection.predict_probabilities(networks,
                                                                        noisy[None]).items()}
    condition = "clean" if severity == 0 else f"{corruption}, severity {severity}"
    fig = probability_bars(probs, CIFAR10_CLASSES, f"Class probabilities — {condition}",
                           true_class=label)
    lines = [f"**{condition}** — top-1 per model; true class: "
             + (f"**{label}** ({source})" if label else "not known (pick it to mark the "
                                                          "predictions right or wrong)"), ""]
    for name, p in probs.items():
        top = CIFAR10_CLASSES[int(np.argmax(p))]
        lines.append(f"- {name}: **{top}** ({p.max():.1%}){_verdict(top, label)}")
    lines += [""] + [f"> {n}" for n in notes] + ([missing] if missing else [])
    return _zoom(clean), _zoom(noisy), fig, "\n".join(lines)


@guarded
def sweep(corruption: str, n_images: int, seed: int = 0, severity: int = 5,
          progress=gr.Progress()):
    """Handler: (accuracy-vs-severity figure, reliability figure of clean and ``severity``,
    rows) on a random test subset."""
    corruption = choice(corruption, CORRUPTIONS, CORRUPTION)
    severity = RELIABILITY_SEVERITY.check(severity)
    n_images, seed = SWEEP_IMAGES.check(n_images), SUBSET_SEED.check(seed)
    progress(0.0, desc="loading the test images")
    images, labels = inspection.dataset_sample(n_images, seed)
    networks, _ = _networks()
    result = inspection.severity_sweep(networks, images, labels, corruption,
                                       (0, *SEVERITIES), seed,
                                       progress=lambda f, msg: progress(f, desc=msg))
    acc = accuracy_vs_severity(result.rows, f"Accuracy vs severity — {corruption}, "
                                            f"{n_images} test images")
    panels = {("clean" if s == 0 else f"{corruption} {s}"):
              {m: result.reliability[(m, s)] for m in networks} for s in (0, severity)}
    rel = reliability_diagrams(panels, "Reliability diagrams (marker size: share of images)")
    rows = [[r[c] if not isinstance(r[c], float) else round(r[c], 4) for c in SWEEP_COLUMNS]
            for r in result.rows]
    return acc, rel, rows


def build(examples: list[str]) -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context): the prediction
    panel, then the sweep; a prediction on Predict and on every change of its inputs."""
    gr.Markdown("Corrupt a CIFAR-10 test image (or your own, resized to 32×32) and compare the "
                "class probabilities of every available network; sweep the severities on a "
                "random test subset for accuracy and calibration.")
    inputs, outputs, run = _predict_panel(examples)
    sweep_controls, sweep_outputs, sweep_run = _sweep_panel()
    run.click(predict, inputs, outputs, api_name="noise_predict")
    for control in inputs:
        control.change(_predict_if_image, inputs, outputs, api_name=False,
                       show_progress="minimal")
    corruption = inputs[1]
    sweep_run.click(sweep, [corruption, *sweep_controls], sweep_outputs, api_name="noise_sweep")


def _predict_if_image(image, *values):
    """:func:`predict`, or empty outputs while there is no image."""
    return predict(image, *values) if image is not None else (None, None, None, "")


def _predict_panel(examples: list[str]) -> tuple[list, list, gr.Button]:
    """The image and its corruption's controls beside the clean and corrupted images and the
    class probabilities: (inputs: image, corruption, severity, seed, true class; outputs:
    clean, corrupted, probabilities, info; the Predict button)."""
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            image = image_upload(label="Image", height=220,
                                 value=examples[0] if examples else None, elem_id="noise-image")
            if examples:
                gr.Examples(examples, inputs=image, label="CIFAR-10 test images")
            corruption = gr.Dropdown(corruption_choices(), value="gaussian_noise",
                                     label=CORRUPTION, elem_id="noise-corruption",
                                     info=f"all {len(CORRUPTIONS)} of CIFAR-10-C, by family")
            severity = SEVERITY.slider(3, 1, elem_id="noise-severity")
            seed = NOISE_SEED.number(0)
            truth = gr.Dropdown([UNKNOWN, *CIFAR10_CLASSES], value=UNKNOWN, label=TRUE_CLASS,
                                info="CIFAR-10 test images are recognised without it",
                                elem_id="noise-true-class")
            run = gr.Button("Predict", variant="primary", elem_id="noise-run")
        with gr.Column(scale=2):
            with gr.Row():
                clean_out = gr.Image(label=f"Clean (32×32, shown ×{ZOOM})", height=180,
                                     interactive=False)
                noisy_out = gr.Image(label="Corrupted", height=180, interactive=False)
            info = gr.Markdown(elem_id="noise-info")
            bars = gr.Plot(label="Class probabilities", elem_id="noise-probs")
    return [image, corruption, severity, seed, truth], [clean_out, noisy_out, bars, info], run


def _sweep_panel() -> tuple[list, list, gr.Button]:
    """The severity sweep: (its controls after the corruption: images, subset seed,
    reliability severity; its outputs: accuracy plot, reliability plot, table; its button)."""
    with gr.Accordion("Sweep over severities (the corruption chosen above)", open=True):
        with gr.Row():
            n_images = SWEEP_IMAGES.slider(100, 10)
            sweep_seed = SUBSET_SEED.number(0)
            rel_severity = RELIABILITY_SEVERITY.slider(
                5, 1, elem_id="noise-reliability-severity")
            sweep_run = gr.Button("Run sweep", variant="primary", elem_id="noise-sweep-run")
        with gr.Row():
            acc_plot = gr.Plot(label="Accuracy vs severity", elem_id="noise-sweep-plot")
            rel_plot = gr.Plot(label="Reliability", elem_id="noise-reliability")
        table = gr.Dataframe(headers=SWEEP_COLUMNS, label="Results", interactive=False)
    return [n_images, sweep_seed, rel_severity], [acc_plot, rel_plot, table], sweep_run
