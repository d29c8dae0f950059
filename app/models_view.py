"""View 5 — Models: the available checkpoints with their cards, and export for deployment."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from app.common import guarded, missing_teachers_note, offer_files, zoo
from app.inputs import choice, pick
from tgd_core.core import paths
from tgd_core.nets import model_zoo

FORMATS = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}  # format -> file suffix
COLUMNS = ["name", "role", "method", "architecture", "input", "accuracy (%)", "ECE", "recipe",
           "source", "path"]
# pixel widths: each header on one line ("accuracy (%)", not "accura cy"); recipe and path wrap,
# and a narrow window scrolls the table sideways instead of squeezing it
COLUMN_WIDTHS = ["150px", "130px", "90px", "120px", "70px", "120px", "80px", "240px", "110px",
                 "280px"]
MAX_CELL_CHARS = 80  # a cell shows this much of a long recipe; its card has it in full
MAX_CARD_CHARS = 100_000  # a model card is a page of Markdown; more is not a card
CARD_LABEL = "Model card"


@guarded
def table() -> tuple[list[list], str]:
    """Handler: (one row per checkpoint, Markdown summary)."""
    entries = zoo()
    rows = [[c["name"], model_zoo.ROLE_LABELS[c["role"]], c["method"] or "—", c["architecture"],
             c["input"], "—" if c["accuracy"] is None else round(c["accuracy"], 2),
             "—" if c["ece"] is None else round(c["ece"], 4), c["recipe"] or "—", c["source"],
             c["path"]] for c in (e.card() for e in entries)]
    lines = [f"**{len(entries)} networks** — checkpoints in `{model_zoo.checkpoint_dir()}` "
             f"(card: `<name>.json` beside each) and the authors' students in "
             f"`{model_zoo.official_dir()}`."]
    lines += [f"- **{e.name}**: {e.description}" for e in entries if e.description]
    missing = missing_teachers_note(entries)
    return rows, "\n".join(lines + ([f"\n{missing}"] if missing else []))


def card_path(entry: model_zoo.ModelEntry) -> Path | None:
    """The Markdown model card beside a checkpoint (``checkpoints/<name>.md``, written by
    scripts/make_model_cards.py), or None (the authors' files have none)."""
    if entry.source != "checkpoints":
        return None
    return entry.path.parent / f"{entry.name}.md"


def card_markdown(entry: model_zoo.ModelEntry) -> str:
    """The entry's model card in full, or a note of what is known without one."""
    path = card_path(entry)
    if path is not None and path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        if len(text) > MAX_CARD_CHARS:
            return (f"**{entry.name}**: its model card `{path.name}` holds {len(text):,} "
                    f"characters, more than a card ({MAX_CARD_CHARS:,}); open the file itself.")
        return text
    known = f"{entry.description}. " if entry.description else ""
    return (f"# {entry.name}\n\n{known}No Markdown model card for this network "
            f"({'the authors release' if entry.source == 'official' else path.name + ' is absent'}"
            f"); its recorded fields are in the table above.")


def first_with_card() -> str | None:
    """The network whose card the view opens with: the last (a student) with a Markdown card,
    else the last; None without networks."""
    entries = zoo()
    carded = [e for e in entries if (p := card_path(e)) is not None and p.is_file()]
    chosen = carded or entries
    return chosen[-1].name if chosen else None


@guarded
def model_card(name: str) -> str:
    """Handler: the selected network's model card (Markdown)."""
    return card_markdown(pick(name, {e.name: e for e in zoo()}, CARD_LABEL, "networks"))


@guarded
def export(name: str, fmt: str, progress=gr.Progress()) -> tuple[list[str], str]:
    """Handler: export the zoo network called ``name`` as ``fmt`` (onnx | torchscript) under
    the state folder (validated against PyTorch, see :mod:`tgd_core.nets.export`); (copies of the
    model and its sidecar for download, summary)."""
    from tgd_core.nets.export import export_checkpoint

    entry = pick(name, {e.name: e for e in zoo()}, "network", "networks")
    suffix = FORMATS[choice(fmt, FORMATS, "format")]
    progress(0.1, desc=f"exporting {name} to {fmt} and validating it")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", entry.name).strip("_") or "model"
    out = Path(paths.state_dir()) / "exports" / f"{stem}{suffix}"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = export_checkpoint(entry.path, out, fmt)
    return offer_files([result.path, result.sidecar]), result.summary()


def build() -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context)."""
    rows, summary = table()
    info = gr.Markdown(summary, elem_id="models-info")
    grid = gr.Dataframe(rows, headers=COLUMNS, label="Checkpoints (click a row for its card)",
                        interactive=False, wrap=True, column_widths=COLUMN_WIDTHS,
                        max_chars=MAX_CELL_CHARS, elem_id="models-table")
    refresh = gr.Button("Refresh", elem_id="models-refresh")
    refresh.click(table, None, [grid, info], api_name="models")
    names, first = [r[0] for r in rows], first_with_card()
    with gr.Accordion(CARD_LABEL, open=True):
        picked = gr.Dropdown(names, value=first, label=CARD_LABEL, elem_id="models-card-name")
        card = gr.Markdown(model_card(first) if first else "", elem_id="models-card")
    picked.change(model_card, picked, card, api_name="model_card")
    refresh.click(lambda: gr.update(choices=[e.name for e in zoo()]), None, picked,
                  api_name=False)

    def select(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    grid.select(select, None, picked, api_name=False)
    with gr.Accordion("Export for deployment (ONNX / TorchScript)", open=False):
        with gr.Row():
            name = gr.Dropdown([r[0] for r in rows], value=rows[-1][0] if rows else None,
                               label="network", elem_id="export-name")
            fmt = gr.Radio(list(FORMATS), value="onnx", label="format",
                           elem_id="export-format")
            go = gr.Button("Export", variant="primary", elem_id="export-run")
        files = gr.File(label="model and sidecar (.json)", file_count="multiple",
                        elem_id="export-files")
        report = gr.Markdown(elem_id="export-report")
    go.click(export, [name, fmt], [files, report], api_name="export")
