"""Running an experiment: one recipe trains everything a comparison needs and tabulates it.

``run_experiment`` trains whatever is missing — each run resumes from its own ``latest.pt`` after
a kill, finished runs are skipped, under ``torchrun`` every run trains data-parallel —,
evaluates each student (clean accuracy/NLL/ECE of the best and last epochs on the full test
split, and the last epoch under every corruption and severity; cached in the run's
``eval.json``) and writes the reports (:mod:`.report`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tgd_core.experiments.job import ScaledContext
from tgd_core.experiments.plan import finished, plan
from tgd_core.experiments.recipe import EvalSpec, Recipe
from tgd_core.experiments.report import summarise, write_reports


def run_experiment(recipe: Recipe, out: str | Path, *, only: list[str] | None = None,
                   progress: bool | None = None, log=print, report: bool = True, ctx=None
                   ) -> list[dict[str, Any]]:
    """Train what is missing, evaluate, write the reports (unless ``report=False``, e.g. for
    parallel partial runs); returns the summary rows. ``ctx`` (a job context) sees each run's
    progress scaled to the whole experiment and can stop it at a step boundary. Under
    ``torchrun`` every run trains data-parallel; rank 0 evaluates and reports (the other ranks
    return no rows)."""
    from tgd_core.core import distributed

    out = Path(out)
    dist, _ = distributed.setup(recipe.common.get("device", "auto"))
    if not dist.is_main:
        log = _quiet
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(recipe.model_dump_json(indent=2) + "\n")
    selected = [(label, cfg) for label, cfg in plan(recipe, out)
                if not only or label.startswith(("teacher", "init"))
                or label.split(" seed ")[0] in only]
    durations = _train(selected, progress=progress, log=log, ctx=ctx)
    if not dist.is_main:
        return []
    evals = _evaluate(selected, recipe.evaluation, log)
    rows = summarise(recipe, evals)
    if report:
        write_reports(recipe, out, rows, evals, durations)
        log(f"results: {out / 'results.md'}")
    return rows


def _train(runs: list[tuple[str, Any]], *, progress: bool | None, log, ctx
           ) -> dict[str, float]:
    """Train (or resume) each unfinished run in order; the training seconds of every run."""
    from tgd_core.training import run_training

    durations: dict[str, float] = {}
    for i, (label, cfg) in enumerate(runs):
        if finished(cfg):
            log(f"[done] {label}")
        else:
            resume = (Path(cfg.out_dir) / "latest.pt").exists()
            log(f"[{'resume' if resume else 'train'}] {label} -> {cfg.out_dir}")
            t0 = time.perf_counter()
            run_training(cfg, resume=resume, progress=progress,
                         ctx=ScaledContext(ctx, i, len(runs), label) if ctx else None)
            log(f"[done] {label} in {time.perf_counter() - t0:.0f} s")
        durations[label] = json.loads((Path(cfg.out_dir) / "result.json").read_text()).get(
            "train_seconds", 0.0)
    return durations


def _evaluate(runs: list[tuple[str, Any]], spec: EvalSpec, log) -> dict[str, list[dict]]:
    """The evaluations of the method runs (not teachers, not init), per method in plan order;
    corrupted images are shared between runs."""
    evals: dict[str, list[dict]] = {}
    corrupted: dict = {}
    for label, cfg in runs:
        if " seed " not in label:
            continue
        log(f"[evaluate] {label}")
        evals.setdefault(label.split(" seed ")[0], []).append(
            evaluate_run(cfg, spec, corrupted))
    return evals


def evaluate_run(cfg, spec: EvalSpec, corrupted_cache: dict | None = None) -> dict[str, Any]:
    """Clean metrics of best and last checkpoints, and the corruption sweep of the last one;
    cached in the run's eval.json. ``corrupted_cache`` shares corrupted images between runs."""
    from tgd_core.core.devices import select_device
    from tgd_core.data.datasets import load_dataset
    from tgd_core.evaluation.metrics import evaluate_conditions, evaluate_model

    path = Path(cfg.out_dir) / "eval.json"
    key = spec.model_dump()
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("spec") == key:
            return cached
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
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


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
