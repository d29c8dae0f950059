"""``train`` and ``distill`` as background jobs: the same loop as the CLI, in the job's folder.

Importing this module registers both kinds (:func:`~tgd_core.jobs.registry.register_kind`); it
does not import torch (the loop is imported when a job runs).
"""

from __future__ import annotations

from typing import Any

from tgd_core.jobs.context import JobStopped
from tgd_core.jobs.registry import register_kind
from tgd_core.training.config import TrainConfig


def run_train_job(cfg: TrainConfig, ctx) -> dict[str, Any]:
    """Runner of the ``train`` and ``distill`` job kinds: checkpoints and metrics go to the
    job's checkpoint folder; a cancelled job stops at a step boundary with ``latest.pt`` saved,
    and a resumed one continues from it."""
    from tgd_core.training.stopping import Stopped
    from tgd_core.training.trainer import run_training

    out = ctx.checkpoint_dir
    cfg = TrainConfig.build(**{**cfg.model_dump(), "out_dir": str(out)})
    resume = bool(ctx.resume) and (out / "latest.pt").exists()
    try:
        result = run_training(cfg, resume=resume, ctx=ctx, progress=False)
    except Stopped as exc:
        raise JobStopped(str(exc)) from None
    return {**result, "checkpoint": str(out / "best.pt"), "latest": str(out / "latest.pt")}


register_kind("train", TrainConfig, run_train_job)
register_kind("distill", TrainConfig, run_train_job)
