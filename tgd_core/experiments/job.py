"""The ``experiment`` job kind: its config (:class:`ExperimentJob`), its runner and the job
context each training run of the experiment sees (progress scaled to the whole experiment).

Light on import (pydantic and the recipe schema only): the runner imports the rest when run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from tgd_core.experiments.recipe import Recipe
from tgd_core.jobs.registry import register_kind


class ScaledContext:
    """A job context seen by run ``index`` of ``total``: progress scaled to the experiment."""

    def __init__(self, ctx, index: int, total: int, label: str) -> None:
        self.ctx, self.index, self.total, self.label = ctx, index, total, label

    def progress(self, fraction, epoch=None, eta=None, message=None):
        """The run's progress as a fraction of the whole experiment."""
        self.ctx.progress((self.index + fraction) / self.total, epoch=epoch,
                          message=f"{self.label}: epoch {epoch}")

    def log(self, row):
        """A metrics row, labelled with the run."""
        self.ctx.log({"run": self.label, **row})

    def should_stop(self):
        return self.ctx.should_stop()


class ExperimentJob(BaseModel):
    """Config of an ``experiment`` job: a recipe file, where to write, which rows at which
    seeds, and whether the students that see identical batches train together (``tgd experiment
    --group-students``)."""

    model_config = ConfigDict(extra="forbid")
    recipe: str
    out: str | None = None
    only: list[str] | None = None
    seeds: list[int] | None = None
    group_students: bool = False

    def model_post_init(self, _context: Any) -> None:
        recipe = Recipe.load(self.recipe)  # rows and seeds rejected at submit time
        recipe.check_rows(self.only, "only")
        recipe.check_seeds(self.seeds, self.only, "seeds")


def run_experiment_job(cfg: ExperimentJob, ctx) -> dict[str, Any]:
    """Runner of the ``experiment`` job kind (resumes its runs; stops at a step boundary)."""
    from tgd_core.experiments.runner import run_experiment
    from tgd_core.jobs import JobStopped
    from tgd_core.training import Stopped

    recipe = Recipe.load(cfg.recipe)
    out = Path(cfg.out) if cfg.out else ctx.run_dir / "experiment"
    try:
        rows = run_experiment(recipe, out, only=cfg.only, seeds=cfg.seeds, progress=False,
                              ctx=ctx, log=lambda m: print(m, flush=True),
                              group_students=cfg.group_students)
    except Stopped as exc:
        raise JobStopped(str(exc)) from None
    return {"results": str(out / "results.md"), "rows": rows}


register_kind("experiment", ExperimentJob, run_experiment_job)
