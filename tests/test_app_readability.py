"""Issue #17, items 5-8: what the similarity-map, noise, jobs and models views show a first-time
visitor, checked on the handlers (called as plain functions, as in test_app_views.py).

No test sleeps for a guessed time: the job test polls the store for the state it needs, with a
generous limit that only catches hangs.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

from app import jobs_view  # noqa: E402
from tests import test_app_views as views  # noqa: E402
from tests.waiting import wait_for  # noqa: E402

FORM, table_rows = views.FORM, views.table_rows
zoo, kinds = views.zoo, views.kinds  # the tiny zoo and the train/distill kinds (fixtures)

def styling(table) -> list[list[str]]:
    """The per-cell styles the browser receives for a jobs table (gradio's own conversion)."""
    return gr.Dataframe(interactive=False).postprocess(table).metadata["styling"]


# -- jobs ----------------------------------------------------------------------------------------

def _running_job(job_id: int):
    """Mark the queued job running, as a worker claiming it does."""
    job = jobs_view.store().claim(worker_pid=os.getpid())
    assert job is not None and job.id == job_id
    return job


def test_a_cancelled_running_job_reads_stopping_until_it_stops(zoo, kinds):
    _, _, job_id = jobs_view.submit(*{**FORM, "method": "scratch"}.values())
    job = _running_job(job_id)
    row = table_rows(jobs_view.jobs_table())[0]
    assert (row[3], row[6]) == ("running", jobs_view.ESTIMATING)  # no progress report yet
    jobs_view.store().heartbeat(job_id, job.attempt, {"progress": 0.5, "eta_s": 30.0})
    assert table_rows(jobs_view.jobs_table())[0][6] == "0:00:30"
    row = table_rows(jobs_view.cancel(job_id))[0]
    assert (row[3], row[4], row[6]) == ("stopping…", "50 %", "")  # no ETA while stopping
    assert "**stopping…**" in jobs_view.details(job_id)[1]
    assert jobs_view.store().finish(job_id, job.attempt, "cancelled", message="stopped")
    assert table_rows(jobs_view.jobs_table())[0][3] == "cancelled"
    assert "**cancelled**" in jobs_view.details(job_id)[1]


def test_the_selected_job_row_is_highlighted(zoo, kinds):
    ids = [jobs_view.submit(*{**FORM, "method": "scratch"}.values())[2] for _ in range(3)]
    table = jobs_view.jobs_table(ids[1])
    rows, styles = table_rows(table), styling(table)
    assert [r[0] for r in rows] == ids[::-1]
    assert [set(s) for s in styles] == [{""}, {jobs_view.SELECTED_STYLE}, {""}]
    assert all(set(s) == {""} for s in styling(jobs_view.jobs_table(None)))
    assert all(set(s) == {""} for s in styling(jobs_view.jobs_table(999)))
    # the handlers return the table with their job selected
    assert set(styling(jobs_view.select_job(ids[0])[6])[2]) == {jobs_view.SELECTED_STYLE}
    assert set(styling(jobs_view.poll(ids[2], {})[0])[0]) == {jobs_view.SELECTED_STYLE}


def test_progress_text_shows_a_long_runs_first_steps():
    from dataclasses import replace

    from tgd_core.jobs.store import Job

    job = Job(**{f: None for f in Job.__dataclass_fields__})
    texts = [replace(job, progress=p).progress_text for p in (0.0, 0.003, 0.0999, 0.5, 1.0)]
    assert texts == ["0 %", "0.3 %", "10.0 %", "50 %", "100 %"]


def test_one_epoch_curves_draw_visible_markers_on_epoch_ticks(zoo, kinds):
    _, _, job_id = jobs_view.submit(*{**FORM, "method": "scratch"}.values())
    job = jobs_view.store().get(job_id)
    job.run_dir.mkdir(parents=True)
    job.metrics_path.write_text(json.dumps({"epoch": 1, "train_ce": 2.1, "train_accuracy": 21.0,
                                            "test_accuracy": 19.5}) + "\n")
    fig, _ = jobs_view.details(job_id)
    assert [t.mode for t in fig.data] == ["lines+markers"] * 3
    assert all(t.marker.size >= 8 for t in fig.data)
    assert tuple(fig.layout.xaxis.range) == (0.5, 1.5) and fig.layout.xaxis.dtick == 1


class FirstReportProbe:
    """A job context that, at the runner's first progress report, polls the store until the
    report is there and records what the jobs table shows then (the epoch has not ended)."""

    def __init__(self, ctx, job_id: int) -> None:
        self._ctx, self.job_id, self.calls, self.seen = ctx, job_id, [], None

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def progress(self, fraction, epoch=None, eta=None, message=None):
        self._ctx.progress(fraction, epoch=epoch, eta=eta, message=message)
        self.calls.append(fraction)
        if self.seen is None:
            store = jobs_view.store()
            wait_for(lambda: store.get(self.job_id).progress > 0, what="progress in the store")
            self.seen = {"row": table_rows(jobs_view.jobs_table())[0],
                         "metrics": store.read_metrics(self.job_id)}


@pytest.mark.usefixtures("cifar_test_images")
def test_job_progress_and_eta_move_within_the_first_epoch(zoo):
    from tgd_core.jobs import JobContext
    from tgd_core.jobs.registry import parse_config
    from tgd_core.training.jobs import run_train_job  # registers the train kind

    cfg = dict(student="wrn16_1", train_subset=96, test_subset=32, test_split="test", epochs=1,
               batch_size=32, threads=1)
    job = jobs_view.store().submit("train", cfg)
    job = _running_job(job.id)
    ctx = JobContext(jobs_view.store(), job)
    probe = FirstReportProbe(ctx, job.id)
    try:
        run_train_job(parse_config("train", job.config), probe)
    finally:
        ctx.close()
    assert probe.calls == pytest.approx([1 / 3, 2 / 3, 1.0])  # after every step
    row = dict(zip(jobs_view.TABLE_COLUMNS, probe.seen["row"], strict=True))
    assert probe.seen["metrics"] == []  # the first epoch had not ended
    assert row["status"] == "running" and row["progress"] == "33 %" and row["epoch"] == 1
    assert row["ETA"] not in ("", jobs_view.ESTIMATING)
    h, m, s = map(int, row["ETA"].split(":"))
    assert h * 3600 + m * 60 + s >= 0


# -- models --------------------------------------------------------------------------------------

def test_models_table_columns_fit_their_headers():
    from app import models_view

    assert len(models_view.COLUMN_WIDTHS) == len(models_view.COLUMNS)
    for header, width in zip(models_view.COLUMNS, models_view.COLUMN_WIDTHS, strict=True):
        # ~8 px per character of a 14 px font plus the cell's padding and sort icon
        assert int(width.removesuffix("px")) >= 8 * len(header) + 24, header


def test_the_shipped_model_cards_are_shown_in_full(monkeypatch):
    from app import models_view
    from tgd_core.core import paths

    shipped = paths.PROJECT_ROOT / "checkpoints"
    cards = sorted(shipped.glob("*.md"))
    if not cards:
        pytest.skip("no shipped model cards")
    monkeypatch.setenv("TGD_CHECKPOINT_DIR", str(shipped))
    for path in cards:
        assert models_view.model_card(path.stem) == path.read_text(encoding="utf-8")


def test_model_card_of_the_tiny_zoo(zoo):
    from app import models_view

    (zoo / "student_tgd.md").write_text("# student_tgd\n\n| split | accuracy % |\n|---|---:|\n")
    assert models_view.model_card("student_tgd").startswith("# student_tgd\n\n| split |")
    note = models_view.model_card("t1_raw")
    assert note.startswith("# t1_raw") and "t1_raw.md is absent" in note
    (zoo / "student_tgd.md").write_text("x" * (models_view.MAX_CARD_CHARS + 1))
    assert "more than a card" in models_view.model_card("student_tgd")
    with pytest.raises(gr.Error, match="Model card: not one of the offered networks"):
        models_view.model_card("../../etc/passwd")


# -- teachers & similarity maps ------------------------------------------------------------------

NO_PROGRESS = lambda *a, **k: None  # noqa: E731


def _axis(fig, name: str):
    return fig.layout[name.replace("x", "xaxis").replace("y", "yaxis")]


def test_similarity_maps_carry_thumbnails_and_class_names(zoo, cifar_test_images, tmp_path):
    from PIL import Image

    from app import teachers_view
    from tgd_core.data.datasets import CIFAR10_CLASSES
    from tgd_core.evaluation import inspection

    upload = tmp_path / "my photo.png"
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(upload)
    fig, info, rows = teachers_view.maps([str(upload)], 3, 0, 0.5, "t1_raw", "plain_pi",
                                         "student_tgd", progress=NO_PROGRESS)
    _, classes = inspection.dataset_sample(3, 0)
    labels = ["0 my photo.png"] + [f"{k + 1} {CIFAR10_CLASSES[c]}" for k, c in
                                   enumerate(classes)]
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    strips = [t for t in fig.data if t.type == "image"]
    assert len(heatmaps) == 3 * 4 and heatmaps[0].z.shape == (4, 4)
    assert len(strips) == 4 + 3  # above each network's column, beside each group's row
    assert all(s.source.startswith("data:image/png;base64,") for s in strips)
    # each strip spans the map's cells: image k over [k - 0.5, k + 0.5]
    assert all(s.x0 == s.y0 == -0.5 + s.dx / 2 and s.dx == s.dy for s in strips)
    bottom = {_axis(fig, t.xaxis).ticktext for t in heatmaps[2::3]}  # group 3: the last row
    left = {_axis(fig, t.yaxis).ticktext for t in strips[4:]}  # the groups' strips
    assert bottom == {tuple(labels)} and left == {tuple(labels)}
    assert "my photo.png" in labels[0] and CIFAR10_CLASSES[classes[0]] in labels[1]
    assert [a.text for a in fig.layout.annotations][:4] == ["T1", "T2", "merged", "student"]


def test_similarity_loss_is_explained_in_words(zoo):
    from app import teachers_view

    fig, info, rows = teachers_view.maps(None, 4, 0, 0.9, "t1_raw", "plain_pi", "student_tgd",
                                         progress=NO_PROGRESS)
    assert "β/3" not in "".join(teachers_view.LOSS_COLUMNS)
    assert "mean squared difference between the student's normalised map" in info
    assert "β = 3000 split equally over the 3 groups" in info
    assert teachers_view.BETA == 3000.0
    assert all(r[2] == pytest.approx(r[1] * 1000, abs=1e-3) for r in rows)


def _wiring(build):
    """The events a view's ``build`` wires, as gradio records them (BlockFunction)."""
    with gr.Blocks() as demo:
        build()
    return demo, list(demo.fns.values())


def _dependencies(build):
    """(component, event name, handler, trigger mode) of each event a view's build wires."""
    demo, deps = _wiring(build)
    return [(demo.blocks[block_id], event, dep.fn, dep.trigger_mode)
            for dep in deps for block_id, event in dep.targets]


def test_the_alpha_box_redraws_the_maps_as_it_changes(zoo):
    from app import teachers_view

    wired = [(event, mode) for block, event, fn, mode in _dependencies(teachers_view.build)
             if getattr(block, "label", None) == teachers_view.ALPHA.label
             and fn is teachers_view.maps]
    # "change" fires for the number box as for the handle; "release" only for the handle
    assert wired == [("change", "always_last")]


# -- noise robustness ----------------------------------------------------------------------------

def _verdicts(info: str) -> dict[str, tuple[str, str]]:
    """model -> (its top-1 class, its mark) from the summary's "- model: **class** (p) ✓"."""
    import re

    return {m[1]: (m[2], m[3]) for m in re.finditer(r"^- (\S+): \*\*(\w+)\*\* \([^)]*\)"
                                                   r"( [✓✗])?$", info, re.M)}


def test_noise_prediction_shows_the_true_class_and_marks(zoo, cifar_test_images):
    from app import noise_view
    from tgd_core.data.datasets import CIFAR10_CLASSES, load_cifar10

    images, labels = load_cifar10(noise_view.RECOGNISED_SPLIT)
    truth = CIFAR10_CLASSES[int(labels[0])]
    _, _, fig, info = noise_view.predict(images[0], "contrast", 0)
    assert f"true class: **{truth}** (CIFAR-10 test label)" in info
    verdicts = _verdicts(info)
    assert set(verdicts) == {t.name for t in fig.data}
    for trace in fig.data:  # each mark agrees with the model's bars
        top = CIFAR10_CLASSES[int(np.argmax(trace.y))]
        assert verdicts[trace.name] == (top, " ✓" if top == truth else " ✗")
    (shade,) = fig.layout.shapes
    k = CIFAR10_CLASSES.index(truth)
    assert (shade.x0, shade.x1) == (k - 0.5, k + 0.5)


def test_noise_true_class_of_an_upload_is_optional(zoo):
    from app import noise_view
    _, _, fig, info = noise_view.predict(views.RNG_IMAGE, "contrast", 2)
    assert "true class: not known" in info and not fig.layout.shapes
    assert all(mark is None for _, mark in _verdicts(info).values())
    _, _, fig, info = noise_view.predict(views.RNG_IMAGE, "contrast", 2, 0, "cat")
    assert "true class: **cat** (given)" in info and len(fig.layout.shapes) == 1
    assert all(mark in (" ✓", " ✗") for _, mark in _verdicts(info).values())
    with pytest.raises(gr.Error, match=r"True class \(optional\): not one of the offered"):
        noise_view.predict(views.RNG_IMAGE, "contrast", 2, 0, "unicorn")


def test_the_reliability_plot_has_its_own_severity_control(zoo, cifar_test_images):
    from app import noise_view

    demo, deps = _wiring(lambda: noise_view.build([]))
    (dep,) = [d for d in deps if d.fn is noise_view.sweep]
    labels = [getattr(c, "label", None) for c in dep.inputs]
    assert noise_view.RELIABILITY_SEVERITY.label in labels
    assert noise_view.SEVERITY.label not in labels
    _, rel, _ = noise_view.sweep("contrast", 10, 0, 2, progress=NO_PROGRESS)
    assert [a.text for a in rel.layout.annotations] == ["clean", "contrast 2"]
    with pytest.raises(gr.Error, match="Reliability diagram: severity beside clean: must be ≥ 1"):
        noise_view.sweep("contrast", 10, 0, 0, progress=NO_PROGRESS)


def test_the_corruption_choice_lists_every_engine_corruption_by_family():
    from app import noise_view
    from tgd_core.data.corruptions import CORRUPTIONS, family_of

    offered = noise_view.corruption_choices()
    names = [name for _, name in offered]
    assert sorted(names) == sorted(CORRUPTIONS) and len(names) == len(set(names))
    assert all(label.startswith(family_of(name) + " · ") for label, name in offered)
    demo, _ = _wiring(lambda: noise_view.build([]))
    (dropdown,) = [b for b in demo.blocks.values()
                   if getattr(b, "label", None) == noise_view.CORRUPTION]
    assert [tuple(c) for c in dropdown.choices] == offered


def test_the_models_view_opens_on_a_network_with_a_card(zoo):
    from app import models_view

    assert models_view.first_with_card() == "student_tgd"  # the last network: no card, yet
    (zoo / "t1_raw.md").write_text("# t1_raw\n")
    assert models_view.first_with_card() == "t1_raw"


def test_jobs_table_columns_fit_their_headers():
    assert len(jobs_view.TABLE_WIDTHS) == len(jobs_view.TABLE_COLUMNS)
    for header, width in zip(jobs_view.TABLE_COLUMNS, jobs_view.TABLE_WIDTHS, strict=True):
        # ~8 px per character of a 14 px font plus the cell's padding
        assert int(width.removesuffix("px")) >= 8 * len(header) + 16, header
    assert int(jobs_view.TABLE_WIDTHS[3].removesuffix("px")) >= 8 * len("succeeded") + 16
