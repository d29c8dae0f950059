"""``tgd experiment RECIPE.yaml``: train what a comparison needs, resume after a kill, tabulate."""

from __future__ import annotations

from pathlib import Path

from tgd_core.commands import check_output_folder


def register(sub) -> None:
    p = sub.add_parser("experiment", help="run a recipe: teachers, students × seeds, results",
                       description=__doc__.splitlines()[0])
    p.add_argument("recipe", help="recipe YAML (see recipes/)")
    p.add_argument("--out", help="experiment folder (default runs/experiments/<name>)")
    p.add_argument("--only", nargs="+", metavar="METHOD", help="only these methods (rows)")
    p.add_argument("--plan", action="store_true", help="list the runs and their state; train "
                                                       "nothing")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-report", action="store_true",
                   help="train and evaluate only (e.g. parallel --only runs); report later")
    p.set_defaults(func=run)


def run(args) -> int:
    from tgd_core.experiments.plan import finished, plan, reused_teachers
    from tgd_core.experiments.recipe import Recipe
    from tgd_core.experiments.runner import main_log, run_experiment

    recipe = Recipe.load(args.recipe)
    out = Path(args.out or f"runs/experiments/{recipe.name}")
    check_output_folder(out)
    if args.plan:
        reused = reused_teachers(recipe, out)
        for role, path in reused.items():
            print(f"{'reuse':8} {'teacher ' + role:28} {path}")
        for label, cfg in plan(recipe, out, reused):
            state = ("done" if finished(cfg) else
                     "partial" if (Path(cfg.out_dir) / "latest.pt").exists() else "todo")
            print(f"{state:8} {label:28} {cfg.student}/{cfg.student_input} {cfg.epochs} epochs "
                  f"-> {cfg.out_dir}")
        return 0
    run_experiment(recipe, out, only=args.only, progress=False if args.no_progress else None,
                   log=main_log, report=not args.no_report)
    return 0
