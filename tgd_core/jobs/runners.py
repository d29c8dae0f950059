"""Runners of the engine's job kinds, with their configs (heavy modules are imported inside).

- ``pi-cache`` (:class:`PICacheJob`): fill the dataset PI cache of a split, part by part.
- ``evaluate`` (:class:`EvaluateJob`): accuracy/NLL/ECE of a checkpoint on clean, corrupted or
  noised images; with ``sweep`` every CIFAR-10-C corruption × severity, one condition a step.
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tgd_core.core.fileio import atomic_write
from tgd_core.data.datasets import CIFAR10_SPLITS
from tgd_core.evaluation.sweep import Condition, conditions
from tgd_core.jobs.context import JobContext, JobStopped
from tgd_core.jobs.registry import register_kind


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_split(v: str) -> str:
    if v not in CIFAR10_SPLITS:
        raise ValueError(f"unknown split {v!r}; choose from {sorted(CIFAR10_SPLITS)}")
    return v


class PICacheJob(_Config):
    """Config of a ``pi-cache`` job (see ``tgd pi --dataset``)."""

    dataset: Literal["cifar10"] = "cifar10"
    split: str = "train"
    representation: dict[str, Any] = Field(default_factory=lambda: {"mode": "paper"})
    data_dir: str | None = None
    cache_dir: str | None = None
    limit: int | None = Field(None, ge=1, description="only the first N images of the split")
    workers: int = Field(1, ge=1, description="processes computing parts in parallel")

    _split = field_validator("split")(_check_split)

    @field_validator("representation")
    @classmethod
    def _representation(cls, v: dict[str, Any]) -> dict[str, Any]:
        from tgd_core.topology.representation import representation_from_dict

        return representation_from_dict(v).to_dict()


def run_pi_cache(config: PICacheJob, ctx: JobContext) -> dict[str, Any]:
    """Compute the split's missing PI parts in rounds of ``workers`` parts (one shard each);
    progress after each part, stop between rounds. Finished parts are the checkpoint."""
    from tgd_core.data.datasets import load_cifar10
    from tgd_core.topology import cache
    from tgd_core.topology.representation import representation_from_dict

    images, _ = load_cifar10(config.split, config.data_dir)
    if config.limit is not None:
        images = images[: config.limit]
    rep = representation_from_dict(config.representation)
    entry = cache.PICache.for_images(images, rep, config.dataset, config.split,
                                     config.cache_dir)
    total = len(images)
    done = total - sum(b - a for a, b in entry.missing())
    ctx.progress(done / total, message=f"{done}/{total} images")

    def part_done(n: int) -> None:
        nonlocal done
        done += n
        ctx.progress(done / total, message=f"{done}/{total} images")
        ctx.log({"images_done": done, "images_total": total})

    rounds = -(-total // (cache.PART_ROWS * config.workers))
    computed = 0
    for i in range(rounds):
        if ctx.should_stop():
            raise JobStopped(f"stopped after {done}/{total} images")
        computed += entry.fill(images, rep, shard=(i, rounds), workers=config.workers,
                               progress=part_done)
    return {"cache": str(entry.root), "n": total, "shape": [total, *entry.shape],
            "computed": computed, "complete": entry.complete()}


class EvaluateJob(_Config):
    """Config of an ``evaluate`` job (see ``tgd evaluate``)."""

    checkpoint: str
    split: str = "test"
    data_dir: str | None = None
    limit: int | None = Field(None, ge=1)
    corruption: str | None = None
    severity: int | None = Field(None, ge=1, le=5)
    noise_sigma: float | None = Field(None, ge=0)
    sweep: bool = False
    sweep_sigmas: list[float] = Field(default_factory=list)
    seed: int = 0
    batch_size: int = Field(500, ge=1)
    threads: int | None = Field(None, ge=1)
    device: str = "cpu"

    _split = field_validator("split")(_check_split)

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, v: str) -> str:
        """The checkpoint must be a file now (checked again when the job runs); the message
        names it in full (the input shown after it is cut short). Kept as an absolute path:
        the worker that runs the job may start in another folder than the submitter."""
        if os.path.isdir(v):
            raise ValueError(f"{v}: a folder, not a checkpoint file")
        if not os.path.isfile(v):
            raise ValueError(f"{v}: " + ("not a regular file" if os.path.exists(v)
                                         else "no such file"))
        return os.path.abspath(v)

    @field_validator("corruption")
    @classmethod
    def _corruption(cls, v: str | None) -> str | None:
        from tgd_core.data.corruptions import CORRUPTIONS

        if v is not None and v not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {v!r}; choose from {sorted(CORRUPTIONS)}")
        return v

    @model_validator(mode="after")
    def _modes(self) -> EvaluateJob:
        if (self.corruption is None) != (self.severity is None):
            raise ValueError("corruption and severity go together")
        modes = [self.corruption is not None, self.noise_sigma is not None, self.sweep]
        if sum(modes) > 1:
            raise ValueError("choose at most one of corruption, noise_sigma and sweep")
        if self.sweep_sigmas and not self.sweep:
            raise ValueError("sweep_sigmas needs sweep")
        return self

    def conditions(self) -> list[Condition]:
        """The conditions to evaluate, in table order: one corruption, one noise σ, or clean
        (with ``sweep``: then every corruption × severity and each of ``sweep_sigmas``)."""
        if self.corruption is not None:
            return conditions((self.corruption,), (self.severity,), clean=False)
        if self.noise_sigma is not None:
            return conditions(sigmas=(self.noise_sigma,), clean=False)
        if not self.sweep:
            return conditions()
        from tgd_core.data.corruptions import CORRUPTIONS, SEVERITIES

        return conditions(CORRUPTIONS, SEVERITIES, self.sweep_sigmas)


def run_evaluate(config: EvaluateJob, ctx: JobContext) -> dict[str, Any]:
    """Evaluate condition by condition; finished rows are the checkpoint (``rows.json``)."""
    from tgd_core.core.devices import select_device
    from tgd_core.core.errors import TGDError
    from tgd_core.data.datasets import load_cifar10
    from tgd_core.evaluation.metrics import evaluate_conditions, write_table
    from tgd_core.nets.checkpoints import load_checkpoint

    ckpt = load_checkpoint(config.checkpoint)
    if ckpt.input_kind != "raw":
        raise TGDError(f"{config.checkpoint}: takes {ckpt.input_kind!r} input; evaluate jobs "
                       "handle raw-image checkpoints only")
    images, labels = load_cifar10(config.split, config.data_dir)
    if config.limit is not None:
        images, labels = images[: config.limit], labels[: config.limit]
    device = select_device(config.device)
    model = ckpt.build(device)
    saved = ctx.checkpoint_dir / "rows.json"
    rows: list[dict[str, Any]] = json.loads(saved.read_text()) if ctx.resume and saved.exists() \
        else []
    sweep = config.conditions()
    for i, condition in enumerate(sweep[len(rows):], start=len(rows)):
        if ctx.should_stop():
            raise JobStopped(f"stopped after {i}/{len(sweep)} conditions")
        [row] = evaluate_conditions(model, images, labels, ckpt.normalization, [condition],
                                    seed=config.seed, batch_size=config.batch_size,
                                    num_threads=config.threads, device=device, progress=None)
        rows.append(row)
        atomic_write(saved, json.dumps(rows), fault="jobs.evaluate.rows")
        ctx.log(row)
        ctx.progress((i + 1) / len(sweep),
                     message=f"{row['corruption']} {row['severity'] or ''}".strip())
    write_table(rows, ctx.run_dir / "results.csv")
    return {"checkpoint": config.checkpoint, "model": ckpt.model, "split": config.split,
            "rows": rows}


register_kind("pi-cache", PICacheJob, run_pi_cache)
register_kind("evaluate", EvaluateJob, run_evaluate)
