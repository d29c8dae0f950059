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
    grid = gr.Dataframe(rows, headers=COLUMNS, label="Checkpoints", interactive=False,
                        wrap=True, elem_id="models-table")
    refresh = gr.Button("Refresh", elem_id="models-refresh")
    refresh.click(table, None, [grid, info], api_name="models")
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
