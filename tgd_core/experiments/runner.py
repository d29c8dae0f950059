"""Running an experiment: one recipe trains everything a comparison needs and tabulates it.

``run_experiment`` trains whatever is missing — each run resumes from its own ``latest.pt`` after
a kill, finished runs are skipped, under ``torchrun`` every run trains data-parallel —,
evaluates each student (clean accuracy/NLL/ECE of the best and last epochs on the full test
split, and the last epoch under every corruption and severity; cached in the run's
``eval.json``) and writes the reports (:mod:`.report`).

With ``parallel=N`` up to N runs train at once, each in its own process (sharing one GPU: at
the paper's batch of 128 one run leaves most of an accelerator idle); a run starts once the
runs it needs (its teachers, the init student) are finished. With ``stop_after`` every run
stops at its next step boundary after that many seconds, saving ``latest.pt``: running the same
command again resumes (finished runs are skipped). Ctrl-C or SIGTERM (to the experiment's
process alone or to its whole group) stops every run the same way (raising
:class:`~tgd_core.training.Interrupted`); a second Ctrl-C stops at once.

With ``group_students=True`` (``--group-students``) the student runs that see identical batches
(:func:`~.plan.student_groups`: e.g. every method's student of one seed) train together in one
process, each step's batch, on-the-fly PIs and teachers' forward computed once for all of them
(:mod:`tgd_core.training.group`); each run's files are exactly those it gets trained alone.
A group is a unit of work (one process under ``parallel``); its runs that stand at another
position (one finished, or stopped elsewhere) train apart (:func:`train_unit`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import atomic_write
from tgd_core.experiments.job import ScaledContext
from tgd_core.experiments.plan import (
    finished,
    is_student,
    json_object,
    plan,
    read_result,
    student_groups,
)
from tgd_core.experiments.recipe import EvalSpec, Recipe
from tgd_core.experiments.report import summarise, write_reports


def run_experiment(recipe: Recipe, out: str | Path, *, only: list[str] | None = None,
                   seeds: list[int] | None = None, progress: bool | None = None, log=print,
                   report: bool = True, ctx=None, parallel: int = 1,
                   stop_after: float | None = None, group_students: bool = False,
                   train: bool = True) -> list[dict[str, Any]]:
    """Train what is missing, evaluate, write the reports (unless ``report=False``, e.g. for
    parallel partial runs); returns the summary rows. ``only``, ``seeds``: only these rows, at
    these seeds (:func:`selected_runs`). With ``train=False`` nothing is trained: the finished
    students are evaluated and reported (an interim report of an experiment still under way;
    each row over the seeds it has finished). ``ctx`` (a job context) sees each run's progress
    scaled to the whole experiment and can stop it at a step boundary. Under ``torchrun`` every
    run trains data-parallel; rank 0 evaluates and reports (the other ranks return no rows).
    ``parallel``, ``stop_after``: see the module doc (a stop raises
    :class:`~tgd_core.training.Stopped` once every run has stopped); ``group_students``:
    see the module doc."""
    from tgd_core.core import distributed

    out = Path(out)
    dist, _ = distributed.setup(recipe.common.get("device", "auto"))
    if parallel > 1 and (dist.enabled or ctx is not None):
        raise TGDError("parallel runs are separate processes: not under torchrun or in a job")
    if group_students and dist.enabled:
        raise TGDError("--group-students trains a group in one process: not under torchrun")
    deadline = time.time() + stop_after if stop_after is not None else None
    if not dist.is_main:
        log = _quiet
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write(out / "recipe.json", recipe.model_dump_json(indent=2) + "\n")
    selected = selected_runs(recipe, plan(recipe, out), only, seeds)
    units = student_groups(selected) if group_students else [[run] for run in selected]
    if not train:
        selected = [(label, cfg) for label, cfg in selected if finished(cfg)]
        durations = _train_seconds(selected)
    elif parallel > 1:
        durations = _train_parallel(units, parallel, log=log, deadline=deadline)
    else:
        durations = _train(units, progress=progress, log=log, ctx=ctx, deadline=deadline)
    if not dist.is_main:
        return []
    evals = _evaluate(selected, recipe.evaluation, log, ctx=ctx, deadline=deadline)
    rows = summarise(recipe, evals)
    if report:
        write_reports(recipe, out, rows, evals, durations)
        log(f"results: {out / 'results.md'}")
    return rows


Unit = list[tuple[str, Any]]  # runs trained together (a group of students) or one run


def _train(units: list[Unit], *, progress: bool | None, log, ctx,
           deadline: float | None = None) -> dict[str, float]:
    """Train (or resume) each unfinished run in order, unit by unit; the training seconds of
    every run. Without a job context, Ctrl-C or SIGTERM stops the run in training at its next
    step (:func:`~tgd_core.training.interruptible`) and starts no other."""
    from tgd_core.training.stopping import Stopped, StopWhen, interruptible

    runs = [run for unit in units for run in unit]
    index = {label: i for i, (label, _) in enumerate(runs)}
    with interruptible() if ctx is None else contextlib.nullcontext() as asked:

        def context(label: str):
            if ctx is not None:
                return ScaledContext(ctx, index[label], len(runs), label)
            return StopWhen(deadline, asked=asked)

        for unit in units:
            if asked is not None and asked():
                raise Stopped(f"stopped before {unit[0][0]}")
            train_unit(_unfinished(unit, log), progress=progress, log=log, context=context)
    return _train_seconds(runs)


def _unfinished(unit: Unit, log) -> Unit:
    """The runs of ``unit`` still to train (the finished ones logged as done)."""
    todo = []
    for label, cfg in unit:
        if finished(cfg):
            log(f"[done] {label}")
        else:
            todo.append((label, cfg))
    return todo


def _resuming(cfg) -> bool:
    return (Path(cfg.out_dir) / "latest.pt").exists()


def train_unit(runs: Unit, *, progress: bool | None, log, context) -> None:
    """Train (or resume) ``runs``, one unit of work: those standing at one position together
    as a group of students (:func:`~tgd_core.training.group.groups_by_position`), the others
    apart; ``context(label)``: the run's context."""
    from tgd_core.training import run_training
    from tgd_core.training.group import groups_by_position, train_group

    if not runs:
        return
    for part in groups_by_position(runs) if len(runs) > 1 else [runs]:
        for label, cfg in part:
            log(f"[{'resume' if _resuming(cfg) else 'train'}] {label} -> {cfg.out_dir}")
        labels = ", ".join(label for label, _ in part)
        t0 = time.perf_counter()
        if len(part) == 1:
            label, cfg = part[0]
            run_training(cfg, resume=_resuming(cfg), progress=progress, ctx=context(label))
        else:
            log(f"[group] {labels}: one process, shared batches and teachers")
            cfgs = [cfg for _, cfg in part]
            train_group(cfgs, resume=[_resuming(c) for c in cfgs], progress=progress,
                        ctxs=[context(label) for label, _ in part])
        log(f"[done] {labels} in {time.perf_counter() - t0:.0f} s")


def _train_seconds(runs: list[tuple[str, Any]]) -> dict[str, float]:
    """The training seconds of every run (from its result.json; TGDError naming a damaged
    one: :func:`~.plan.read_result`)."""
    return {label: (read_result(Path(cfg.out_dir)) or {}).get("train_seconds", 0.0)
            for label, cfg in runs}


def selected_runs(recipe: Recipe, runs: list[tuple[str, Any]], only: list[str] | None,
                  seeds: list[int] | None = None) -> list[tuple[str, Any]]:
    """The planned runs of the rows named in ``only`` at the ``seeds`` given (default: every
    row, every seed of each) and the runs they need (the teachers and the init student they
    start from: :func:`needed_runs`), in plan order. A name that is not a row of the recipe,
    or a seed that none of the rows has, is refused in one line."""
    if not only and not seeds:
        return runs
    recipe.check_rows(only)
    recipe.check_seeds(seeds, only)
    needs = needed_runs(runs)
    rows = {label for label, cfg in runs if is_student(label)
            and (not only or label.split(" seed ")[0] in only)
            and (not seeds or cfg.seed in seeds)}
    wanted = rows | {need for label in rows for need in needs[label]}
    return [(label, cfg) for label, cfg in runs if label in wanted]


def needed_runs(runs: list[tuple[str, Any]]) -> dict[str, list[str]]:
    """For each run, the labels of the runs it needs: those whose folder holds one of its
    teacher checkpoints or its ``init_student``."""
    folders = {Path(cfg.out_dir).resolve(): label for label, cfg in runs}
    needs = {}
    for label, cfg in runs:
        inputs = [*cfg.teachers.values(), *([cfg.init_student] if cfg.init_student else [])]
        needs[label] = [folders[p] for p in (Path(i).resolve().parent for i in inputs)
                        if p in folders]
    return needs


def _train_parallel(units: list[Unit], workers: int, *, log,
                    deadline: float | None) -> dict[str, float]:
    """Train the unfinished units (a run, or a group of students), up to ``workers`` at once
    in separate processes (spawned: each its own CUDA context), each started once the runs
    it needs are finished. A failed unit lets the running ones end, starts no more, and is
    raised; a stop (``deadline``, or Ctrl-C or SIGTERM to this process: passed on to the
    workers, which ignore SIGINT themselves) likewise raises ``Stopped`` once every running
    unit has saved its state. A second Ctrl-C kills the workers (their last checkpoints stay)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tgd_core.training.stopping import interruptible

    runs = [run for unit in units for run in unit]
    todo = [left for left in (_unfinished(unit, log) for unit in units) if left]
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with interruptible() as asked:  # a Stopped raised in the block after a signal: Interrupted
        with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                 initializer=_start_worker, initargs=(stop,)) as pool:
            try:
                failure = _schedule(pool, todo, workers, _readiness(runs), log=log,
                                    deadline=deadline, asked=asked, stop=stop)
            except BaseException:  # a second Ctrl-C (or a bug): do not wait for the workers
                _kill_workers(pool)
                raise
        if failure is not None:
            raise failure
    if todo:
        left = [label for unit in todo for label, _ in unit]
        raise TGDError(f"runs {left} could not start: the runs they need did not finish")
    return _train_seconds(runs)


_worker_stop = None  # in a worker process: the experiment's stop event (_start_worker)


def _start_worker(stop) -> None:
    """Set up a worker process of :func:`_train_parallel`: Ctrl-C is its parent's to handle
    (it asks through ``stop``, at a step boundary), not a KeyboardInterrupt mid-step."""
    global _worker_stop
    from tgd_core.core.interrupts import ignore_interrupts

    ignore_interrupts()
    _worker_stop = stop


def _kill_workers(pool) -> None:
    """SIGKILL the pool's worker processes (they ignore SIGINT)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()


def _readiness(runs: list[tuple[str, Any]]):
    """A test of whether a unit may start: every run its runs need is finished."""
    configs, needs = dict(runs), needed_runs(runs)
    return lambda unit: all(finished(configs[need]) for label, _ in unit
                            for need in needs[label])


def _schedule(pool, todo: list[Unit], workers: int, ready, *, log, deadline: float | None,
              asked, stop) -> BaseException | None:
    """Keep up to ``workers`` ready units of ``todo`` running in ``pool`` (removing each from
    ``todo`` as it starts) until none is left or none can start; after a failure, or once
    ``asked()`` (then ``stop`` is set for the workers), start no more. Returns the first
    failure (an exception or ``Stopped``), or None."""
    running: dict[Any, str] = {}
    failure: BaseException | None = None
    while todo or running:
        if asked() and not stop.is_set():
            stop.set()
        startable = [unit for unit in todo if failure is None and not stop.is_set()
                     and ready(unit)]
        for unit in startable[:workers - len(running)]:
            todo.remove(unit)
            running[_submit(pool, unit, deadline)] = ", ".join(label for label, _ in unit)
            for label, cfg in unit:
                log(f"[{'resume' if _resuming(cfg) else 'train'}] {label} -> "
                    f"{cfg.out_dir} ({len(running)} running)")
        if not running:
            break  # what is left waits for a run that failed or stopped
        ended = _collect(running, log)  # collect even after a failure, or the loop spins
        failure = failure or ended
    if stop.is_set() and failure is None and todo:
        from tgd_core.training.stopping import Stopped

        failure = Stopped(f"stopped before {todo[0][0][0]}")
    return failure


def _submit(pool, unit: Unit, deadline: float | None):
    """Start ``unit`` in a worker process (configs travel as JSON); returns its future."""
    return pool.submit(train_in_process, [(label, cfg.model_dump_json()) for label, cfg in unit],
                       deadline)


POLL_S = 0.5  # how often the parallel scheduler looks for a stop request while runs train


def _collect(running: dict[Any, str], log) -> BaseException | None:
    """Wait up to :data:`POLL_S` for running units to end, log how each ended and drop it
    from ``running``; returns the first failure among them, or None."""
    from concurrent.futures import FIRST_COMPLETED, wait

    from tgd_core.training import Stopped

    failure: BaseException | None = None
    done, _ = wait(running, timeout=POLL_S, return_when=FIRST_COMPLETED)
    for future in done:
        labels = running.pop(future)
        try:
            pid, seconds = future.result()
            log(f"[done] {labels} in {seconds:.0f} s (process {pid})")
        except Stopped as exc:
            log(f"[stopped] {labels}: {exc}")
            failure = failure or exc
        except Exception as exc:  # noqa: BLE001 — raised once the others have ended
            log(f"[failed] {labels}: {exc}")
            failure = failure or exc
    return failure


def train_in_process(unit: list[tuple[str, str]], deadline: float | None
                     ) -> tuple[int, float]:
    """One unit (label, config JSON) in a worker process of :func:`_train_parallel` (see
    :func:`train_unit`); (process id, seconds)."""
    from tgd_core.training import TrainConfig
    from tgd_core.training.stopping import StopWhen

    runs = [(label, TrainConfig.build(**json.loads(text))) for label, text in unit]
    t0, parent = time.perf_counter(), os.getppid()
    asked = _worker_stop.is_set if _worker_stop is not None else None
    try:
        train_unit(runs, progress=False, log=_quiet,
                   context=lambda _: StopWhen(deadline, parent, asked))
    finally:
        if os.getppid() != parent:  # the experiment is gone: no one to report to or wait for
            os._exit(3)
    return os.getpid(), time.perf_counter() - t0


def _evaluate(runs: list[tuple[str, Any]], spec: EvalSpec, log, *, ctx=None,
              deadline: float | None = None) -> dict[str, list[dict]]:
    """The evaluations of the method runs (not teachers, not init), per method in plan order;
    corrupted images are shared between runs. A run not yet evaluated is not started once the
    job context (``ctx``) asks to stop, or, without one, past ``deadline`` or after Ctrl-C or
    SIGTERM: :class:`~tgd_core.training.Stopped` is raised, every evaluation done so far kept
    in its run's eval.json, from which the same command goes on."""
    from tgd_core.training.stopping import StopWhen, interruptible

    evals: dict[str, list[dict]] = {}
    corrupted: dict = {}
    with interruptible() if ctx is None else contextlib.nullcontext() as asked:
        stop = ctx if ctx is not None else StopWhen(deadline, asked=asked)
        for label, cfg in runs:
            if " seed " not in label:
                continue
            log(f"[evaluate] {label}")
            evals.setdefault(label.split(" seed ")[0], []).append(
                {**evaluate_run(cfg, spec, corrupted, log=log, stop=stop), "seed": cfg.seed})
    return evals


def evaluate_run(cfg, spec: EvalSpec, corrupted_cache: dict | None = None, *,
                 log=print, stop=None) -> dict[str, Any]:
    """Clean metrics of best and last checkpoints, and the corruption sweep of the last one;
    cached in the run's eval.json (written atomically; a damaged one is evaluated again:
    :func:`cached_evaluation`). ``corrupted_cache`` shares corrupted images between runs.
    ``stop`` (a run context): a run to evaluate anew raises
    :class:`~tgd_core.training.Stopped` instead once it asks to stop."""
    from tgd_core.core.devices import select_device
    from tgd_core.data.datasets import load_dataset
    from tgd_core.evaluation.metrics import evaluate_conditions, evaluate_model

    path = Path(cfg.out_dir) / "eval.json"
    key = spec.model_dump()
    cached = cached_evaluation(path, key, log)
    if cached is not None:
        return cached
    if stop is not None and stop.should_stop():
        from tgd_core.training.stopping import Stopped

        raise Stopped(f"stopped before evaluating {cfg.out_dir}")
    if not (path.parent / "latest.pt").is_file():
        raise TGDError(f"{cfg.out_dir} keeps no checkpoint (an archived run?) and its "
                       "eval.json is missing, damaged or of another evaluation spec: it "
                       "cannot be evaluated again")
    images, labels = load_dataset(cfg.dataset, spec.split, cfg.data_dir, limit=spec.subset)
    out: dict[str, Any] = {"spec": key}
    device = select_device(cfg.device)
    for which in ("best", "last"):
        ckpt, model, transform = _load_for_evaluation(cfg, which, device)
        result = evaluate_model(model, images, labels, ckpt.normalization, transform=transform,
                                device=device)
        out[which] = {**result.summary(), "epoch": ckpt.epoch,
                      "reliability": result.to_dict()["reliability"]}
    n = spec.corruption_subset or len(images)
    out["sweep"] = evaluate_conditions(
        model, images[:n], labels[:n], ckpt.normalization, spec.conditions(), seed=spec.seed,
        transform=transform, corrupted_cache=corrupted_cache, device=device)
    atomic_write(path, json.dumps(out, indent=2) + "\n", fault="experiment.eval")
    return out


def cached_evaluation(path: Path, key: dict[str, Any], log) -> dict[str, Any] | None:
    """The evaluation in ``path`` (a run's eval.json) if it is of spec ``key``, else None.
    eval.json is a cache derived from the run's checkpoints: a damaged one (a torn write, a
    bad copy) is not an error but one warning naming it, and the run is evaluated again."""
    if not path.exists():
        return None
    try:
        cached = json_object(path)
    except (OSError, ValueError) as exc:
        log(f"warning: {path} is damaged ({exc}); evaluating the run again")
        return None
    return cached if cached.get("spec") == key else None


def _load_for_evaluation(cfg, which: str, device):
    """The ``best`` or ``last`` checkpoint of a run, its network on ``device`` (channels-last
    if the run trained so) and the transform of images to its input."""
    import torch

    from tgd_core.evaluation.metrics import model_input_transform
    from tgd_core.nets.checkpoints import load_checkpoint

    ckpt = load_checkpoint(Path(cfg.out_dir) / ("best.pt" if which == "best" else "latest.pt"))
    model = ckpt.build(device)
    if cfg.channels_last:  # as the run trained: 1.4x faster inference on a CPU
        model = model.to(memory_format=torch.channels_last)
    return ckpt, model, model_input_transform(ckpt.input_kind, ckpt.config)


def _quiet(message: str) -> None:
    """The log of ranks other than 0 under torchrun."""


def main_log(message: str) -> None:
    """The CLI's log: one line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)
