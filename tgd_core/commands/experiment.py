"""``tgd experiment RECIPE.yaml``: train what a comparison needs, resume after a kill, tabulate."""

from __future__ import annotations

import argparse
from pathlib import Path

from tgd_core.commands import apply_assignments, check_output_folder

STOPPED = 3  # exit status of an experiment stopped by --stop-after (resumable); Ctrl-C: 130


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a recipe: teachers, students × seeds, results",
                       description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--out", help="experiment folder (default runs/experiments/<name>)")
    p.add_argument("--only", nargs="+", type=comma_separated, metavar="METHOD",
                   help="only these methods (rows; by spaces or commas), and the teachers and "
                        "init student they need")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED",
                   help="only the runs of these seeds (of each row's own); with --only, of "
                        "those rows")
    p.add_argument("--plan", action="store_true", help="list the runs and their state; train "
                                                       "nothing")
    p.add_argument("--baseline", metavar="METHOD",
                   help="compare every row with this one instead of the recipe's baseline "
                        "(reports only: training is unchanged, evaluations are cached)")
    p.add_argument("--no-progress", action="store_true")
    reports = p.add_mutually_exclusive_group()
    reports.add_argument("--no-report", action="store_true",
                         help="train and evaluate only (e.g. parallel --only runs); report later")
    reports.add_argument("--report-only", action="store_true",
                         help="train nothing: evaluate and report the finished runs (an interim "
                              "report; each row over the seeds it has finished)")
    p.add_argument("--parallel", type=positive_int, default=1, metavar="N",
                   help="train up to N runs at once, each in its own process (one GPU "
                        "shared); a run starts once its teachers and init student are done")
    p.add_argument("--group-students", action="store_true",
                   help="train the students that see identical batches (each seed's methods) "
                        "together in one process: each step's batch, on-the-fly PIs and "
                        "teachers' forward computed once for all; every run's files as if "
                        "trained alone (with --parallel N, a group is one of the N)")
    p.add_argument("--stop-after", type=positive_float, metavar="SECONDS",
                   help="stop every run at its next step boundary after SECONDS (latest.pt "
                        "saved), or the evaluation before its next run (each run's eval.json "
                        "kept); exit status 3: the same command resumes")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="for every run, a field of where and how fast it trains, never of "
                        "what it learns (TrainConfig's placement fields), e.g. --set "
                        "compile_mode=reduce-overhead; repeatable")
    p.add_argument("--archive", metavar="DIR",
                   help="then (also after a stop) copy the records of the finished runs into "
                        "DIR, small enough to commit: name DIR in the recipe's reuse and they "
                        "are never trained again (tgd_core/experiments/archive.py)")
    p.set_defaults(func=run)


def run(args) -> int:
    from tgd_core.cli import INTERRUPTED
    from tgd_core.experiments.recipe import Recipe
    from tgd_core.experiments.runner import main_log, run_experiment
    from tgd_core.training import Interrupted, Stopped

    recipe = Recipe.load(args.recipe).with_placement(apply_assignments({}, args.set))
    if args.only:
        args.only = [name for names in args.only for name in names]
    if args.baseline:
        recipe = recipe.with_baseline(args.baseline)
    recipe.check_rows(args.only)
    recipe.check_seeds(args.seeds, args.only)
    out = Path(args.out or f"runs/experiments/{recipe.name}")
    check_output_folder(out)
    if args.plan:
        print_plan(recipe, out, args.only, args.seeds, args.group_students)
        return 0
    try:
        run_experiment(recipe, out, only=args.only, seeds=args.seeds,
                       progress=False if args.no_progress else None, log=main_log,
                       report=not args.no_report, parallel=args.parallel,
                       stop_after=args.stop_after, group_students=args.group_students,
                       train=not args.report_only)
    except Stopped as exc:
        main_log(f"[stopped] {exc}; run the same command again to resume")
        return archived(recipe, out, args.archive,
                        INTERRUPTED if isinstance(exc, Interrupted) else STOPPED)
    return archived(recipe, out, args.archive, 0)


def print_plan(recipe, out: Path, only: list[str] | None, seeds: list[int] | None,
               group_students: bool) -> None:
    """``--plan``: each run (of the rows in ``only`` at ``seeds``, and what they need) and its
    state — reuse (finished elsewhere), done, partial (a latest.pt to resume from) or todo —
    and, with ``--group-students``, the groups that would train together."""
    from tgd_core.experiments.plan import finished, plan, reused_teachers, student_groups
    from tgd_core.experiments.runner import selected_runs

    reused = reused_teachers(recipe, out)
    runs = selected_runs(recipe, plan(recipe, out, reused), only, seeds)
    used = {Path(path) for _, cfg in runs for path in cfg.teachers.values()}
    for role, path in reused.items():
        if not only or Path(path) in used:
            print(f"{'reuse':8} {'teacher ' + role:28} {path}")
    for label, cfg in runs:
        state = ("reuse" if finished(cfg) and not Path(cfg.out_dir).is_relative_to(out) else
                 "done" if finished(cfg) else
                 "partial" if (Path(cfg.out_dir) / "latest.pt").exists() else "todo")
        print(f"{state:8} {label:28} {cfg.student}/{cfg.student_input} {cfg.epochs} epochs "
              f"-> {cfg.out_dir}")
    if group_students:
        groups = [unit for unit in student_groups(runs) if len(unit) > 1]
        for i, unit in enumerate(groups, 1):
            for label, _ in unit:
                print(f"{'group ' + str(i):8} {label:28} shares batches and teachers "
                      f"with {len(unit) - 1} other run(s)")


def archived(recipe, out: Path, dest: str | None, status: int) -> int:
    """``status``, once the finished runs are archived into ``dest`` (if given)."""
    from tgd_core.experiments.archive import archive_runs
    from tgd_core.experiments.runner import main_log

    if dest is not None:
        changed = archive_runs(recipe, out, dest, log=main_log)
        main_log(f"archive: {len(changed)} run(s) added or updated in {dest}")
    return status


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def comma_separated(text: str) -> list[str]:
    """An argparse type for ``--only a,b c``: each argument may name several rows, separated
    by commas."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names no row")
    return names


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value
