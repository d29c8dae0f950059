"""View 3 — Distillation jobs: submit training/distillation jobs to the job store, watch them
(table and curves polled with ``gr.Timer``), cancel, resume, download their files.

Jobs run in a background worker process (``tgd_core.jobs.ensure_worker``), never in the UI
process; every browser tab reads the same SQLite store.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import gradio as gr

from app.common import guarded, zoo
from app.plots import training_curves
from tgd_core import config as tgd_config
from tgd_core import model_zoo
from tgd_core.distill import METHODS
from tgd_core.errors import TGDError
from tgd_core.jobs import FINISHED, JobStore, available_kinds
from tgd_core.models import MODELS

NONE = "(none)"
TABLE_COLUMNS = ["id", "kind", "method", "status", "progress", "epoch", "ETA", "message",
                 "created"]
FILE_SUFFIXES = (".pt", ".log", ".jsonl", ".json")
POLL_S = 2.0
# form field -> method parameter it sets (when the method has that parameter)
PARAM_FIELDS = {"alpha": "alpha", "beta": "beta", "tau": "temperature"}
ROLE_OF = {"t1": "teacher1", "t2": "teacher2"}


@lru_cache(maxsize=4)
def _store(state_dir: str) -> JobStore:
    return JobStore(state_dir)


def store() -> JobStore:
    """The job store of the current state dir (``TGD_STATE_DIR``), opened once."""
    return _store(str(Path(tgd_config.state_dir()).resolve()))


def start_worker() -> int:
    """Pid of the store's worker process, started (detached) if none is alive."""
    from tgd_core.jobs import ensure_worker

    return ensure_worker(1, store().state_dir)


def job_kind(method: str) -> str:
    """``train`` for label-only training (scratch students and teachers), else ``distill``."""
    return "train" if method == "scratch" else "distill"


def job_config(method: str, network: str, student_input: str, t1: str | None, t2: str | None,
               init_student: str | None, epochs, batch_size, lr, alpha, beta, tau, seed,
               train_subset, test_subset) -> tuple[str, dict[str, Any]]:
    """The form as (job kind, training config); subsets of 0 mean the whole split. Teachers
    and parameters the method does not use are left out."""
    if method not in METHODS:
        raise TGDError(f"method: unknown {method!r}; choose from {sorted(METHODS)}")
    cls = METHODS[method]
    form = {"alpha": alpha, "beta": beta, "tau": tau}
    params = {param: form[name] for name, param in PARAM_FIELDS.items()
              if param in cls.Params.model_fields and form[name] is not None}
    picked = {"t1": t1, "t2": t2}
    teachers = {}
    for role in cls.teacher_roles:
        if not picked.get(role) or picked[role] == NONE:
            label = model_zoo.ROLE_LABELS[ROLE_OF[role]]
            raise TGDError(f"teachers: method {method!r} needs a {label} checkpoint ({role}); "
                           "none is selected or available")
        teachers[role] = picked[role]
    cfg: dict[str, Any] = {
        "method": method, "method_params": params, "student": network,
        "student_input": student_input, "teachers": teachers, "epochs": epochs,
        "batch_size": batch_size, "lr": lr, "seed": seed,
        "train_subset": int(train_subset) if train_subset else None,
        "test_subset": int(test_subset) if test_subset else None,
    }
    if init_student and init_student != NONE:
        cfg["init_student"] = init_student
    return job_kind(method), cfg


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600} h {seconds % 3600 // 60:02d}"


def jobs_rows() -> list[list]:
    """Handler: one row per job, newest first."""
    return [[j.id, j.kind, j.config.get("method", ""), j.status, f"{j.progress:.0%}",
             j.epoch if j.epoch is not None else "", _eta(j.eta_s) if not j.finished else "",
             (j.error or j.message or "")[:80],
             time.strftime("%m-%d %H:%M:%S", time.localtime(j.created_at))]
            for j in store().list()]


@guarded
def submit(*form) -> tuple[str, list[list], int]:
    """Handler: validate and queue the job, make sure a worker runs it; (note, table, id)."""
    kind, cfg = job_config(*form)
    if kind not in available_kinds():
        raise TGDError(f"job kind {kind!r} is not available yet in this installation "
                       f"(available: {available_kinds()})")
    job = store().submit(kind, cfg)
    pid = start_worker()
    return (f"Job **{job.id}** ({kind}, {cfg['method']}) queued; worker pid {pid}.",
            jobs_rows(), job.id)


def _job_id(job_id) -> int:
    if not job_id:
        raise TGDError("job: select a job in the table (or type its id)")
    return int(job_id)


@guarded
def cancel(job_id) -> list[list]:
    """Handler: cancel a queued or running job."""
    job = store().cancel(_job_id(job_id))
    gr.Info(f"job {job.id}: " + ("cancelled" if job.status == "cancelled" else
                                 "asked to stop at its next step"))
    return jobs_rows()


@guarded
def resume(job_id) -> list[list]:
    """Handler: queue a failed/cancelled/interrupted job again from its checkpoint."""
    job = store().resume(_job_id(job_id))
    start_worker()
    gr.Info(f"job {job.id}: queued again (attempt {job.attempt})")
    return jobs_rows()


def job_files(job_id) -> list[str]:
    """The job's checkpoints, log, metrics and result files."""
    if not job_id:
        return []
    try:
        run_dir = store().get(int(job_id)).run_dir
    except TGDError:
        return []
    if not run_dir.is_dir():
        return []
    found = sorted((p for p in run_dir.rglob("*")
                    if p.is_file() and p.name.endswith(FILE_SUFFIXES)),
                   key=lambda p: (len(p.relative_to(run_dir).parts), p.name))
    by_name: dict[str, str] = {}  # the run folder's own files win over same-named copies inside
    for p in found:
        by_name.setdefault(p.name, str(p))
    return sorted(by_name.values())


def details(job_id) -> tuple[Any, str]:
    """(training-curve figure or None, Markdown description) of one job."""
    if not job_id:
        return None, "Select a job in the table to see its curves and files."
    try:
        job = store().get(int(job_id))
    except TGDError as exc:
        return None, str(exc)
    rows = store().read_metrics(job.id)
    curve_rows = [r for r in rows if "epoch" in r]
    fig = training_curves(curve_rows, f"Job {job.id} — {job.config.get('method', job.kind)}") \
        if curve_rows else None
    cfg = job.config
    lines = [f"**Job {job.id}** · {job.kind} · **{job.status}** · {job.progress:.0%} · "
             f"attempt {job.attempt}"]
    if "method" in cfg:
        lines.append(f"{cfg['method']} → {cfg.get('student')} ({cfg.get('student_input')}), "
                     f"{cfg.get('epochs')} epochs, batch {cfg.get('batch_size')}, lr "
                     f"{cfg.get('lr')}, params {cfg.get('method_params') or {}}, teachers "
                     f"{cfg.get('teachers') or 'none'}")
    if job.message:
        lines.append(f"Message: {job.message}")
    if job.error:
        lines.append(f"**Error:** `{job.error}`")
    if not curve_rows:
        lines.append("No metrics yet (curves appear after the first epoch).")
    lines.append(f"Files: `{job.run_dir}`")
    return fig, "\n\n".join(lines)


def poll(job_id, seen: dict | None):
    """Timer handler: the table always; curves and files only when the job changed."""
    seen = seen or {}
    rows = jobs_rows()
    if not job_id:
        return rows, gr.skip(), gr.skip(), gr.skip(), seen
    try:
        job = store().get(int(job_id))
    except TGDError:
        return rows, gr.skip(), gr.skip(), gr.skip(), seen
    key = {"id": job.id, "status": job.status, "progress": round(job.progress, 3),
           "attempt": job.attempt}
    if key == seen:
        return rows, gr.skip(), gr.skip(), gr.skip(), seen
    fig, text = details(job.id)
    files = job_files(job.id) if job.status in FINISHED or seen.get("id") != job.id \
        else gr.skip()
    return rows, fig, text, files, key


def _teacher_choices(entries, role: str) -> list[tuple[str, str]]:
    return [(e.name, str(e.path)) for e in model_zoo.by_role(entries, role)] or [(NONE, NONE)]


def build() -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context)."""
    entries = zoo()
    missing = [k for k in ("train", "distill") if k not in available_kinds()]
    if missing:
        gr.Markdown(f"**Note:** the job kind(s) {missing} have no runner in this installation "
                    "yet; such jobs are refused at submit time.")
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("### New job")
            method = gr.Dropdown(sorted(METHODS), value="tgd", label="Method",
                                 elem_id="job-method")
            with gr.Row():
                network = gr.Dropdown(list(MODELS), value="wrn16_1", label="Network",
                                      elem_id="job-network")
                student_input = gr.Radio(["raw", "pi"], value="raw", label="Input")
            t1c, t2c = _teacher_choices(entries, "teacher1"), _teacher_choices(entries, "teacher2")
            t1 = gr.Dropdown(t1c, value=t1c[0][1], label="T1 (raw images)",
                             allow_custom_value=True, info="a listed teacher or any path")
            t2 = gr.Dropdown(t2c, value=t2c[0][1], label="T2 (persistence images)",
                             allow_custom_value=True, info="a listed teacher or any path")
            students = [(e.name, str(e.path)) for e in model_zoo.by_role(entries, "student")]
            init = gr.Dropdown([(NONE, NONE), *students], value=NONE,
                               label="Initialise the student from", allow_custom_value=True)
            with gr.Row():
                epochs = gr.Number(1, precision=0, minimum=1, label="Epochs", elem_id="job-epochs")
                batch = gr.Number(128, precision=0, minimum=1, label="Batch size",
                                  elem_id="job-batch")
                lr = gr.Number(0.1, label="Learning rate")
            with gr.Row():
                alpha = gr.Slider(0, 1, value=0.99, step=0.01, label="α (T1's share)")
                beta = gr.Number(3000.0, label="β (similarity weight)")
                tau = gr.Number(4.0, label="τ (temperature)")
            with gr.Row():
                seed = gr.Number(1234, precision=0, label="Seed")
                train_subset = gr.Number(2000, precision=0, minimum=0,
                                         label="Training images (0 = all)",
                                         elem_id="job-train-subset")
                test_subset = gr.Number(1000, precision=0, minimum=0,
                                        label="Test images (0 = all)", elem_id="job-test-subset")
            submit_btn = gr.Button("Submit job", variant="primary", elem_id="job-submit")
            note = gr.Markdown(elem_id="job-note")
        with gr.Column(scale=2):
            table = gr.Dataframe(jobs_rows(), headers=TABLE_COLUMNS, label="Jobs (click a row)",
                                 interactive=False, elem_id="jobs-table")
            with gr.Row():
                job_id = gr.Number(None, precision=0, label="Selected job", elem_id="job-id")
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="job-cancel")
                resume_btn = gr.Button("Resume", elem_id="job-resume")
            text = gr.Markdown("Select a job in the table to see its curves and files.",
                               elem_id="job-details")
            curves = gr.Plot(label="Loss and accuracy", elem_id="job-curves")
            files = gr.File(label="Checkpoints and logs", file_count="multiple",
                            interactive=False, elem_id="job-files")
    seen = gr.State({})
    timer = gr.Timer(POLL_S)

    form = [method, network, student_input, t1, t2, init, epochs, batch, lr, alpha, beta, tau,
            seed, train_subset, test_subset]
    submit_btn.click(submit, form, [note, table, job_id], api_name="submit_job")
    timer.tick(poll, [job_id, seen], [table, curves, text, files, seen], api_name=False,
               show_progress="hidden")
    cancel_btn.click(cancel, job_id, table, api_name="cancel_job")
    resume_btn.click(resume, job_id, table, api_name="resume_job")

    def select(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    table.select(select, None, job_id, api_name=False)
    job_id.change(lambda j: (*details(j), job_files(j), {}), job_id,
                  [curves, text, files, seen], api_name=False)
