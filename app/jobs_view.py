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

from app.common import guarded, offer_files, zoo
from app.inputs import NumberField, choice, pick
from app.plots import training_curves
from tgd_core.core import paths
from tgd_core.core.errors import TGDError
from tgd_core.distill import METHODS
from tgd_core.distill.tgd import TGDParams
from tgd_core.jobs import CANCELLABLE, FINISHED, RESUMABLE, Job, JobStore
from tgd_core.nets import model_zoo
from tgd_core.nets.models import MODELS
from tgd_core.training.config import TrainConfig

NONE = "(none)"
PLACEHOLDER = "Select a job in the table to see its curves and files."
TABLE_COLUMNS = ["id", "kind", "method", "status", "progress", "epoch", "ETA", "message",
                 "created"]
# pixel widths that fit each column's header and longest usual value ("succeeded",
# "estimating…", "12-05 07:31:02") on one line; the message wraps, and a narrow window scrolls
# the table sideways instead of squeezing its columns
TABLE_WIDTHS = ["44px", "64px", "76px", "104px", "84px", "60px", "100px", "140px", "124px"]
SELECTED_STYLE = "background-color: #ffe9a8; font-weight: 600"
ESTIMATING = "estimating…"
FILE_SUFFIXES = (".pt", ".log", ".jsonl", ".json")
POLL_S = 2.0
INPUTS = ("raw", "pi")
TRAINING_KINDS = ("train", "distill")
# the form's numbers, with the bounds of the schema the job store validates with (TrainConfig)
EPOCHS = NumberField.of(TrainConfig, "epochs", "Epochs", integer=True)
BATCH_SIZE = NumberField.of(TrainConfig, "batch_size", "Batch size", integer=True)
LR = NumberField.of(TrainConfig, "lr", "Learning rate")
SEED = NumberField.of(TrainConfig, "seed", "Seed", integer=True)
TRAIN_IMAGES = NumberField.of(TrainConfig, "train_subset", "Training images (0 = all)",
                              integer=True, ge=0)
TEST_IMAGES = NumberField.of(TrainConfig, "test_subset", "Test images (0 = all)", integer=True,
                             ge=0)
JOB_ID = NumberField("Selected job", integer=True, ge=1)
# form field -> (method parameter it sets when the method has it, its label)
PARAM_FIELDS = {"alpha": ("alpha", "α (T1's share)"), "beta": ("beta", "β (similarity weight)"),
                "tau": ("temperature", "τ (temperature)")}
# teacher slot -> (zoo role, input kind of its network, dropdown label)
TEACHER_SLOTS = {"t1": ("teacher1", "raw", "T1 teacher (raw images)"),
                 "t2": ("teacher2", "pi", "T2 teacher (persistence images)")}
INIT_LABEL = "Initialise the student from"


@lru_cache(maxsize=4)
def _store(state_dir: str) -> JobStore:
    return JobStore(state_dir)


def store() -> JobStore:
    """The job store of the current state dir (``TGD_STATE_DIR``), opened once."""
    return _store(str(Path(paths.state_dir()).resolve()))


def start_worker() -> int:
    """Pid of the store's worker process, started (detached) if none is alive."""
    from tgd_core.jobs import ensure_worker

    return ensure_worker(1, store().state_dir)


def job_kind(method: str) -> str:
    """``train`` for label-only training (scratch students and teachers), else ``distill``."""
    return "train" if method == "scratch" else "distill"


def job_checkpoints(input_kind: str | None = None) -> dict[str, str]:
    """The checkpoints of succeeded train/distill jobs, as {"job 12 best.pt": path}; only those
    of networks reading ``input_kind`` (raw | pi) when given."""
    found = {}
    for job in store().list(status="succeeded"):
        if job.kind not in TRAINING_KINDS or \
                input_kind not in (None, job.config.get("student_input")):
            continue
        for path in sorted(job.checkpoint_dir.glob("*.pt")):
            found[f"job {job.id} {path.name}"] = str(path)
    return found


def offered_checkpoints(role: str) -> dict[str, str]:
    """Name -> path of the checkpoints the form offers for ``role``: the model zoo's networks of
    that role, then succeeded jobs' own (for a teacher: those reading its input kind)."""
    kind = {r: k for r, k, _ in TEACHER_SLOTS.values()}.get(role)
    own = {e.name: str(e.path) for e in model_zoo.by_role(zoo(), role)}
    return {**own, **job_checkpoints(kind)}


def checkpoint_choices(role: str) -> list[str]:
    """The dropdown choices for ``role``: teachers their offers (or NONE), the student's
    initialisation NONE first."""
    offered = list(offered_checkpoints(role))
    return [NONE, *offered] if role == "student" else offered or [NONE]


def _picked_checkpoint(value: Any, role: str, label: str) -> str | None:
    """The path of the offered checkpoint picked in a dropdown; None for NONE or nothing."""
    if value in (None, "", NONE):
        return None
    return pick(value, offered_checkpoints(role), label, "checkpoints")


def _method_params(cls, alpha, beta, tau) -> dict[str, float]:
    """The α/β/τ fields the method has, checked against its own parameter schema."""
    form = {"alpha": alpha, "beta": beta, "tau": tau}
    return {param: NumberField.of(cls.Params, param, label).check(form[name])
            for name, (param, label) in PARAM_FIELDS.items() if param in cls.Params.model_fields}


def _teachers(cls, method: str, picked: dict[str, Any]) -> dict[str, str]:
    """Slot -> checkpoint path of each teacher the method needs, picked from the offers."""
    teachers = {}
    for slot in cls.teacher_roles:
        role, _, label = TEACHER_SLOTS[slot]
        path = _picked_checkpoint(picked.get(slot), role, label)
        if path is None:
            raise TGDError(f"teachers: method {method!r} needs a {model_zoo.ROLE_LABELS[role]} "
                           f"checkpoint ({slot}); none is selected or available")
        teachers[slot] = path
    return teachers


def job_config(method: str, network: str, student_input: str, t1: str | None, t2: str | None,
               init_student: str | None, epochs, batch_size, lr, alpha, beta, tau, seed,
               train_subset, test_subset) -> tuple[str, dict[str, Any]]:
    """The form as (job kind, training config), every field checked against what the form
    offers (TGDError naming the field otherwise). Teachers and initialisation are names of
    offered checkpoints (:func:`offered_checkpoints`), never paths; subsets of 0 mean the
    whole split; teachers and parameters the method does not use are left out."""
    cls = METHODS[choice(method, METHODS, "Method")]
    cfg: dict[str, Any] = {
        "method": method, "method_params": _method_params(cls, alpha, beta, tau),
        "student": choice(network, MODELS, "Network"),
        "student_input": choice(student_input, INPUTS, "Input"),
        "teachers": _teachers(cls, method, {"t1": t1, "t2": t2}),
        "epochs": EPOCHS.check(epochs), "batch_size": BATCH_SIZE.check(batch_size),
        "lr": LR.check(lr), "seed": SEED.check(seed),
        "train_subset": TRAIN_IMAGES.check(train_subset) or None,
        "test_subset": TEST_IMAGES.check(test_subset) or None,
    }
    init = _picked_checkpoint(init_student, "student", INIT_LABEL)
    if init is not None:
        cfg["init_student"] = init
    return job_kind(method), cfg


def _eta(job: Job) -> str:
    """The job's ETA; "estimating…" for a running job before its first progress report, ""
    for one that is stopping."""
    if job.stopping:
        return ""
    return job.eta_text or (ESTIMATING if job.status == "running" else "")


def jobs_rows() -> list[list]:
    """One row per job, newest first (status ``stopping…`` for a cancelled running job)."""
    return [[j.id, j.kind, j.config.get("method", ""), j.status_text, j.progress_text,
             j.epoch if j.epoch is not None else "", _eta(j),
             (j.error or j.message or "")[:80],
             time.strftime("%m-%d %H:%M:%S", time.localtime(j.created_at))]
            for j in store().list()]


def jobs_table(selected=None):
    """Handler output: the jobs table (:func:`jobs_rows`) with the row of the ``selected`` job
    id highlighted (a pandas Styler, which ``gr.Dataframe`` renders with its styles)."""
    import pandas as pd

    frame = pd.DataFrame(jobs_rows(), columns=TABLE_COLUMNS)
    chosen = _job_or_none(selected)

    def highlight(row):
        hit = chosen is not None and row["id"] == chosen.id
        return [SELECTED_STYLE if hit else ""] * len(row)

    return frame.style.apply(highlight, axis=1)


@guarded
def submit(*form) -> tuple[str, Any, int]:
    """Handler: validate and queue the job, make sure a worker runs it; (note, table with the
    new job selected, its id)."""
    kind, cfg = job_config(*form)
    job = store().submit(kind, cfg)
    pid = start_worker()
    return (f"Job **{job.id}** ({kind}, {cfg['method']}) queued; worker pid {pid}.",
            jobs_table(job.id), job.id)


def selected_job(job_id) -> Job:
    """The job whose id the user selected; TGDError naming the field otherwise."""
    if job_id is None or job_id == "":
        raise TGDError(f"{JOB_ID.label}: select a job in the table (or type its id)")
    number = JOB_ID.check(job_id)
    try:
        return store().get(number)
    except TGDError:
        raise TGDError(f"{JOB_ID.label}: no job {number}") from None


def _job_or_none(job_id) -> Job | None:
    try:
        return selected_job(job_id)
    except TGDError:
        return None


@guarded
def cancel(job_id):
    """Handler: cancel a queued job (at once) or a running one (``stopping…`` until its runner
    stops at its next step, then ``cancelled``); the table."""
    job = store().cancel(selected_job(job_id).id)
    gr.Info(f"job {job.id}: " + ("cancelled" if job.status == "cancelled" else
                                 "stopping… (it saves a checkpoint at its next step)"))
    return jobs_table(job.id)


@guarded
def resume(job_id):
    """Handler: queue a failed/cancelled/interrupted job again from its checkpoint; the table."""
    job = store().resume(selected_job(job_id).id)
    start_worker()
    gr.Info(f"job {job.id}: queued again (attempt {job.attempt})")
    return jobs_table(job.id)


def run_files(job: Job) -> list[Path]:
    """The job's own checkpoints, log, metrics and result files (in its run folder; links
    leading out of it are ignored)."""
    run_dir = job.run_dir.resolve()
    if not run_dir.is_dir():
        return []
    found = sorted((p for p in run_dir.rglob("*") if p.is_file()
                    and p.name.endswith(FILE_SUFFIXES) and p.resolve().is_relative_to(run_dir)),
                   key=lambda p: (len(p.relative_to(run_dir).parts), p.name))
    by_name: dict[str, Path] = {}  # the run folder's own files win over same-named copies inside
    for p in found:
        by_name.setdefault(p.name, p)
    return sorted(by_name.values())


def job_files(job_id) -> list[str]:
    """The selected job's files as the browser may download them (copies in gradio's cache);
    [] without a valid selection."""
    job = _job_or_none(job_id)
    return offer_files(run_files(job)) if job is not None else []


def details(job_id) -> tuple[Any, str]:
    """(training-curve figure or None, Markdown description) of one job."""
    if job_id in (None, ""):
        return None, PLACEHOLDER
    try:
        job = selected_job(job_id)
    except TGDError as exc:
        return None, str(exc)
    rows = store().read_metrics(job.id)
    curve_rows = [r for r in rows if "epoch" in r]
    fig = training_curves(curve_rows, f"Job {job.id} — {job.config.get('method', job.kind)}") \
        if curve_rows else None
    cfg = job.config
    eta = _eta(job)
    lines = [f"**Job {job.id}** · {job.kind} · **{job.status_text}** · {job.progress_text}"
             f"{f' · ETA {eta}' if eta else ''} · attempt {job.attempt}"]
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


def buttons(job: Job | None) -> tuple[Any, Any]:
    """The Cancel and Resume buttons for ``job``: each clickable only where the job store
    would do it (cancel a queued or running job, resume a failed, cancelled or interrupted one)."""
    status = job.status if job is not None else None
    return (gr.update(interactive=status in CANCELLABLE),
            gr.update(interactive=status in RESUMABLE))


def poll(job_id, seen: dict | None):
    """Timer handler: the table always (the selected job highlighted); curves, description,
    files and the Cancel and Resume buttons only when the job changed."""
    seen = seen or {}
    rows = jobs_table(job_id)
    job = _job_or_none(job_id)
    unchanged = (rows, *(gr.skip(),) * 5, seen)
    if job is None:
        return unchanged
    key = {"id": job.id, "status": job.status_text, "progress": round(job.progress, 3),
           "eta": _eta(job), "attempt": job.attempt}
    if key == seen:
        return unchanged
    fig, text = details(job.id)
    files = job_files(job.id) if job.status in FINISHED or seen.get("id") != job.id \
        else gr.skip()
    return rows, fig, text, files, *buttons(job), key


def select_job(job_id) -> tuple[Any, ...]:
    """Handler (a job selected): (curves, description, its files, the Cancel and Resume
    buttons, fresh poll state, the table with its row highlighted)."""
    return (*details(job_id), job_files(job_id), *buttons(_job_or_none(job_id)), {},
            jobs_table(job_id))


def refresh_checkpoints(shown: dict | None):
    """Handler (the jobs table changed): new offers (a job succeeded, a checkpoint appeared)
    reach the T1, T2 and initialisation dropdowns; (three updates, what they now show)."""
    now = {role: checkpoint_choices(role) for role in ("teacher1", "teacher2", "student")}
    if now == shown:
        return gr.skip(), gr.skip(), gr.skip(), shown
    return (*(gr.update(choices=choices) for choices in now.values()), now)


def _param_field(name: str) -> NumberField:
    """The form field ``name`` (alpha, beta, tau) with TGD's bounds, as the components show."""
    param, label = PARAM_FIELDS[name]
    return NumberField.of(TGDParams, param, label)


def _form() -> tuple[list[gr.components.Component], list[gr.Dropdown]]:
    """The new-job form's inputs, in :func:`job_config`'s order, and its checkpoint
    dropdowns (T1, T2, initialisation)."""
    method = gr.Dropdown(sorted(METHODS), value="tgd", label="Method", elem_id="job-method")
    with gr.Row():
        network = gr.Dropdown(list(MODELS), value="wrn16_1", label="Network",
                              elem_id="job-network")
        student_input = gr.Radio(list(INPUTS), value="raw", label="Input")
    picks = []
    for slot, (role, _, label) in TEACHER_SLOTS.items():
        choices = checkpoint_choices(role)
        picks.append(gr.Dropdown(choices, value=choices[0], label=label,
                                 info="a zoo teacher or a finished job's checkpoint",
                                 elem_id=f"job-{slot}"))
    picks.append(gr.Dropdown(checkpoint_choices("student"), value=NONE, label=INIT_LABEL,
                             elem_id="job-init"))
    with gr.Row():
        epochs = EPOCHS.number(1, elem_id="job-epochs")
        batch = BATCH_SIZE.number(128, elem_id="job-batch")
        lr = LR.number(0.1)
    with gr.Row():
        alpha = _param_field("alpha").slider(0.99, 0.01)
        beta = _param_field("beta").number(3000.0)
        tau = _param_field("tau").number(4.0)
    with gr.Row():
        seed = SEED.number(1234)
        train_subset = TRAIN_IMAGES.number(2000, elem_id="job-train-subset")
        test_subset = TEST_IMAGES.number(1000, elem_id="job-test-subset")
    return [method, network, student_input, *picks, epochs, batch, lr, alpha, beta, tau, seed,
            train_subset, test_subset], picks


def build() -> None:
    """The view's components and events (call inside a ``gr.Blocks`` context). The handlers
    get the raw values (``preprocess=False``): they check every field themselves, against
    what is offered now, with messages naming the field."""
    with gr.Row():
        with gr.Column(scale=1, min_width=320):
            gr.Markdown("### New job")
            form, picks = _form()
            submit_btn = gr.Button("Submit job", variant="primary", elem_id="job-submit")
            note = gr.Markdown(elem_id="job-note")
        with gr.Column(scale=2):
            table = gr.Dataframe(jobs_table(), headers=TABLE_COLUMNS,
                                 label="Jobs (click a row)", interactive=False, wrap=True,
                                 column_widths=TABLE_WIDTHS, elem_id="jobs-table")
            with gr.Row():
                job_id = JOB_ID.number(None, elem_id="job-id")
                cancel_btn = gr.Button("Cancel", variant="stop", interactive=False,
                                       elem_id="job-cancel")
                resume_btn = gr.Button("Resume", interactive=False, elem_id="job-resume")
            text = gr.Markdown(PLACEHOLDER, elem_id="job-details")
            curves = gr.Plot(label="Loss and accuracy", elem_id="job-curves")
            files = gr.File(label="Checkpoints and logs", file_count="multiple",
                            interactive=False, elem_id="job-files")
    seen, shown = gr.State({}), gr.State(None)  # shown: the offers the dropdowns were updated to
    timer = gr.Timer(POLL_S)
    raw = {"preprocess": False}

    submit_btn.click(submit, form, [note, table, job_id], api_name="submit_job", **raw)
    timer.tick(poll, [job_id, seen], [table, curves, text, files, cancel_btn, resume_btn, seen],
               api_name=False,
               show_progress="hidden", **raw)
    cancel_btn.click(cancel, job_id, table, api_name="cancel_job", **raw)
    resume_btn.click(resume, job_id, table, api_name="resume_job", **raw)
    table.change(refresh_checkpoints, shown, [*picks, shown], api_name=False,
                 show_progress="hidden")

    def select(evt: gr.SelectData):
        return evt.row_value[0] if evt.row_value else gr.skip()

    table.select(select, None, job_id, api_name=False)
    job_id.change(select_job, job_id, [curves, text, files, cancel_btn, resume_btn, seen, table],
                  api_name="select_job", **raw)
