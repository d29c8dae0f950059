"""View 2 — Teachers & similarity maps: what T1, T2, their α-merge and a student "see" of a
batch, as the b×b similarity maps TGD distils, with the per-group similarity loss."""

from __future__ import annotations

import gradio as gr
import numpy as np

from app.common import guarded, missing_teachers_note, network_image, zoo
from app.inputs import NumberField, pick
from app.plots import similarity_grid
from tgd_core.core.errors import TGDError
from tgd_core.data.datasets import CIFAR10_CLASSES
from tgd_core.distill.tgd import TGDParams
from tgd_core.evaluation import inspection
from tgd_core.nets import model_zoo
from tgd_core.training.config import MAX_SEED

NONE = "(none)"
MAX_BATCH = 32
BETA = TGDParams.model_fields["beta"].default  # TGD's similarity weight (TGD_METHOD.md §3)
LOSS_COLUMNS = ["group", "similarity loss", "added to TGD's training loss"]
LOSS_EXPLAINED = (
    "The **similarity loss** of a group is the mean squared difference between the student's "
    "normalised map and the target's, mean((G̃_S − G̃_T)²) over the b×b cells. TGD adds "
    "β/3 × this loss for each of the 3 groups to the loss the student minimises (its weight "
    "β = {beta:g} split equally over the 3 groups): the last column, at that default β.")
SAMPLES = NumberField("CIFAR-10 test samples", integer=True, ge=0, le=MAX_BATCH)
SEED = NumberField("Sample seed", integer=True, ge=0, le=MAX_SEED)
ALPHA = NumberField.of(TGDParams, "alpha", "α (T1's share in the merge)")
# network slot -> (zoo role, dropdown label)
SLOTS = {"t1": ("teacher1", "T1 (raw images)"), "t2": ("teacher2", "T2 (persistence images)"),
         "student": ("student", "Student")}


def choices(role: str) -> list[str]:
    """Names of the available networks of ``role``, or ``[NONE]``."""
    return [e.name for e in model_zoo.by_role(zoo(), role)] or [NONE]


def _batch(files, n_samples: int, seed: int) -> tuple[np.ndarray, list[str], list[str]]:
    """(b×32×32×3 images, their labels — "k class" for CIFAR samples, "k file" for uploads —,
    notes on converted uploads)."""
    if len(files or []) + n_samples > MAX_BATCH:  # before decoding any upload
        raise TGDError(f"the batch holds {len(files or []) + n_samples} images; at most "
                       f"{MAX_BATCH}")
    images, names, notes = [], [], []
    for f in files or []:
        path = getattr(f, "name", f)
        name = str(path).rsplit("/", 1)[-1]
        img, why = network_image(path)
        images.append(img)
        names.append(name)
        notes += [f"{name}: {n}" for n in why]
    if n_samples:
        sample, classes = inspection.dataset_sample(n_samples, seed)
        images += list(sample)
        names += [CIFAR10_CLASSES[int(c)] for c in classes]
    if len(images) < 2:
        raise TGDError("the batch needs at least 2 images: upload some or add dataset samples")
    return np.stack(images), [f"{k} {name}" for k, name in enumerate(names)], notes


def _network(entries, slot: str, name: str | None):
    """The network picked for ``slot`` among the zoo's of its role, or None for NONE."""
    if name in (None, "", NONE):
        return None
    role, label = SLOTS[slot]
    offered = {e.name: e for e in model_zoo.by_role(entries, role)}
    return model_zoo.load_network(pick(name, offered, label, "networks"))


@guarded
def maps(files, n_samples: int = 8, seed: int = 0, alpha: float = 0.99, t1: str | None = None,
         t2: str | None = None, student: str | None = None, progress=gr.Progress()):
    """Handler: (similarity-map figure, Markdown summary, per-group loss rows)."""
    n_samples, seed, alpha = SAMPLES.check(n_samples), SEED.check(seed), ALPHA.check(alpha)
    entries = zoo()
    nets = {slot: _network(entries, slot, name) for slot, name in
            (("t1", t1), ("t2", t2), ("student", student))}
    if not any(nets.values()):
        raise TGDError("choose at least one network (no teacher or student is selected)")
    progress(0.1, desc="preparing the batch")
    images, labels, notes = _batch(files, n_samples, seed)
    progress(0.4, desc="features and similarity maps")
    result = inspection.similarity_maps(images, alpha=alpha, **nets)
    b = len(images)
    fig = similarity_grid(result.maps, f"How alike each network finds the {b} images: "
                                       f"row-normalised similarity maps G̃ ({b}×{b}), "
                                       f"α = {alpha:g}", images, labels)
    lines = [f"**Batch of {b} images** ({len(files or [])} uploaded, {n_samples} from the "
             "CIFAR-10 test set), shown along the maps' axes with their class (CIFAR-10) or "
             "file name. Cell (i, j) of a map: how alike images i and j look to that network "
             "at that group (brighter: more alike)."]
    rows = []
    if result.losses is not None:
        lines.append(f"Student against **{result.target}**. "
                     + LOSS_EXPLAINED.format(beta=BETA))
        rows = [[g + 1, round(v, 6), round(v * BETA / len(result.losses), 4)]
                for g, v in enumerate(result.losses)]
    elif nets["student"] is None:
        lines.append("Choose a student to see its similarity loss.")
    else:
        lines.append("No teacher selected: the student's loss needs T1 and/or T2.")
    lines += [f"> {n}" for n in notes]
    progress(1.0)
    return fig, "\n\n".join(lines), rows


def build() -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context)."""
    entries = zoo()
    gr.Markdown("TGD matches the student's **similarity maps** G = F Fᵀ (b×b, row-normalised) "
                "of each Wide-ResNet group to the teachers' maps merged before normalisation, "
                "row_normalise(α·G_T1 + (1−α)·G_T2).")
    missing = gr.Markdown(missing_teachers_note(entries), elem_id="teachers-missing")
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            files = gr.File(label="Your images (optional)", file_count="multiple",
                            file_types=["image"], height=120)
            n_samples = SAMPLES.slider(8, 1)
            seed = SEED.number(0)
            alpha = ALPHA.slider(0.99, 0.01)
            t1_c, t2_c, s_c = choices("teacher1"), choices("teacher2"), choices("student")
            t1 = gr.Dropdown(t1_c, value=t1_c[0], label=SLOTS["t1"][1])
            t2 = gr.Dropdown(t2_c, value=t2_c[0], label=SLOTS["t2"][1])
            student = gr.Dropdown([*s_c, NONE], value=s_c[-1], label=SLOTS["student"][1])
            with gr.Row():
                refresh = gr.Button("Reload models")
                run = gr.Button("Compute maps", variant="primary", elem_id="teachers-run")
        with gr.Column(scale=3):
            info = gr.Markdown(elem_id="teachers-info")
            plot = gr.Plot(label="Similarity maps", elem_id="teachers-maps")
            table = gr.Dataframe(headers=LOSS_COLUMNS, label="Student similarity loss",
                                 interactive=False)

    def reload():
        entries = zoo()
        t1_c, t2_c, s_c = choices("teacher1"), choices("teacher2"), choices("student")
        return (gr.update(choices=t1_c, value=t1_c[0]), gr.update(choices=t2_c, value=t2_c[0]),
                gr.update(choices=[*s_c, NONE], value=s_c[-1]), missing_teachers_note(entries))

    refresh.click(reload, None, [t1, t2, student, missing], api_name=False)
    run.click(maps, [files, n_samples, seed, alpha, t1, t2, student], [plot, info, table],
              api_name="similarity_maps")
    # the slider's number box and its handle both change the value: redraw on either, the
    # latest value only while the user is still moving it
    alpha.change(maps, [files, n_samples, seed, alpha, t1, t2, student], [plot, info, table],
                 api_name=False, trigger_mode="always_last", show_progress="minimal")
