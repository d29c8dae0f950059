"""View 5 — Models: the available checkpoints with their cards."""

from __future__ import annotations

import gradio as gr

from app.common import guarded, missing_teachers_note, zoo
from tgd_core import model_zoo

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


def build() -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context)."""
    rows, summary = table()
    info = gr.Markdown(summary, elem_id="models-info")
    grid = gr.Dataframe(rows, headers=COLUMNS, label="Checkpoints", interactive=False,
                        wrap=True, elem_id="models-table")
    refresh = gr.Button("Refresh", elem_id="models-refresh")
    refresh.click(table, None, [grid, info], api_name="models")
