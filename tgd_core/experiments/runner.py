"""Experiment runner: one recipe trains everything a comparison needs and tabulates it.

A recipe (YAML) names the teachers, the scratch student used as TGD's "annealing" start, the
methods and the seeds, with TrainConfig fields shared by all runs (``common``) or set per
stage. A teacher may name a trained ``checkpoint`` (e.g. a shipped one) instead of being
trained, if that checkpoint was trained with the teacher's settings. ``run_experiment`` trains whatever is missing — each run resumes from its own
``latest.pt`` after a kill, finished runs are skipped — evaluates each student (clean
accuracy/NLL/ECE of the best and last epochs on the full test split, and the last epoch under
every corruption and severity), and writes ``results.md``, ``results.csv``, ``summary.json`` and
plotly HTML plots (accuracy vs severity per method; reliability diagrams).

Layout under the experiment folder: ``teachers/<role>/``, ``init/``, ``<method>/seed<k>/``; each
run folder holds the training files and ``eval.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tgd_core.core.errors import TGDError


class MethodSpec(BaseModel):
    """One row of the comparison: a method, its parameters and which teachers fill its roles."""

    model_config = ConfigDict(extra="forbid")
    method: str | None = None  # default: the row's name
    params: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, str] = Field(default_factory=dict, description="role -> teacher name")
    init: bool = False  # start from the recipe's scratch student (TGD's annealing)
    overrides: dict[str, Any] = Field(default_factory=dict)


class EvalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: str = "test"
    subset: int | None = Field(None, ge=1, description="first N images (None: the whole split)")
    corruptions: list[str] = Field(default_factory=lambda: [
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "gaussian_blur",
        "contrast", "jpeg_compression"])
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])
    noise_sigmas: list[float] = Field(default_factory=lambda: [0.05, 0.1, 0.2])
    corruption_subset: int | None = Field(2000, ge=1)
    seed: int = 0


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    common: dict[str, Any] = Field(default_factory=dict)
    teachers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    init: dict[str, Any] | None = None
    student: dict[str, Any] = Field(default_factory=dict)
    methods: dict[str, MethodSpec]
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    evaluation: EvalSpec = Field(default_factory=EvalSpec)

    @classmethod
    def load(cls, path: str | Path) -> Recipe:
        """The recipe in the YAML file ``path``; TGDError naming the file and the problem."""
        data = _read_yaml_mapping(path)
        try:
            return cls(**data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
                                 for e in exc.errors())
            raise TGDError(f"{path}: invalid recipe: {problems}") from None


def _read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (empty for an empty file)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise TGDError(f"{path}: cannot read recipe ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise TGDError(f"{path}: cannot read recipe (not a text file)") from None
    except yaml.YAMLError as exc:
        raise TGDError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TGDError(f"{path}: a recipe is a YAML mapping (name:, methods:, ...), got a "
                       f"{type(data).__name__} at the top level")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error's problem and where it is, on one line."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def _config(**values):
    from tgd_core.training import TrainConfig

    return TrainConfig.build(**values)


def _resolve_checkpoint(name: str) -> Path:
    """A bare file name is a shipped checkpoint (``TGD_CHECKPOINT_DIR``); a path is as given."""
    from tgd_core.nets.model_zoo import checkpoint_dir

    path = Path(name).expanduser()
    return checkpoint_dir() / path if len(path.parts) == 1 else path


def reused_teachers(recipe: Recipe, out: Path) -> dict[str, Path]:
    """Teachers whose spec names a trained ``checkpoint`` instead of being trained: name ->
    checkpoint. The checkpoint must have been trained with the spec's settings (its saved
    config equals the one the recipe would train, up to placement and bookkeeping fields) to the
    last epoch."""
    from tgd_core.nets.checkpoints import load_checkpoint

    reused = {}
    for role, spec in recipe.teachers.items():
        if "checkpoint" not in spec:
            continue
        path = _resolve_checkpoint(str(spec["checkpoint"]))
        if not path.is_file():
            raise TGDError(f"teacher {role}: checkpoint {path} does not exist")
        wanted_cfg = _teacher_config(recipe, role, out)
        wanted = wanted_cfg.model_dump()
        ckpt = load_checkpoint(path)
        if not ckpt.config:
            raise TGDError(f"teacher {role}: {path} holds no training config, so it cannot be "
                           "checked against the recipe; train the teacher instead")
        saved = _config(**{k: v for k, v in ckpt.config.items() if k in wanted}).model_dump()
        differ = wanted_cfg.differences(saved, ignore=("placement", "bookkeeping"))
        if differ:
            shown = "; ".join(f"{k}: recipe {wanted[k]!r}, checkpoint {saved[k]!r}"
                              for k in differ)
            raise TGDError(f"teacher {role}: {path} was trained with other settings ({shown})")
        if ckpt.epoch != wanted["epochs"]:
            raise TGDError(f"teacher {role}: {path} stopped at epoch {ckpt.epoch} of "
                           f"{wanted['epochs']}")
        reused[role] = path
    return reused


def _teacher_config(recipe: Recipe, role: str, out: Path):
    spec = {k: v for k, v in recipe.teachers[role].items() if k != "checkpoint"}
    return _config(**{**recipe.common, "method": "scratch", **spec,
                      "out_dir": str(out / "teachers" / role)})


def plan(recipe: Recipe, out: Path, reused: dict[str, Path] | None = None
         ) -> list[tuple[str, Any]]:
    """The runs in order: (label, TrainConfig). Validates every config before anything runs;
    reused teachers (``checkpoint:``; ``reused`` if already checked) are not trained."""
    reused = reused_teachers(recipe, out) if reused is None else reused
    teacher_paths = {role: reused.get(role, out / "teachers" / role / "latest.pt")
                     for role in recipe.teachers}
    runs = [(f"teacher {role}", _teacher_config(recipe, role, out))
            for role in recipe.teachers if role not in reused]
    if recipe.init is not None:
        runs.append(("init (scratch student)", _config(**{
            **recipe.common, **recipe.student, "method": "scratch", **recipe.init,
            "out_dir": str(out / "init")})))
    for name, spec in recipe.methods.items():
        unknown = set(spec.teachers.values()) - set(recipe.teachers)
        if unknown:
            raise TGDError(f"method {name}: unknown teacher(s) {sorted(unknown)}")
        if spec.init and recipe.init is None:
            raise TGDError(f"method {name}: init needs the recipe's 'init' stage")
        for seed in recipe.seeds:
            values = {**recipe.common, **recipe.student, **spec.overrides,
                      "method": spec.method or name, "method_params": spec.params,
                      "teachers": {role: str(teacher_paths[t])
                                   for role, t in spec.teachers.items()},
                      "init_student": str(out / "init" / "latest.pt") if spec.init else None,
                      "seed": seed, "out_dir": str(out / name / f"seed{seed}")}
            runs.append((f"{name} seed {seed}", _config(**values)))
    return runs


def finished(cfg) -> bool:
    result = Path(cfg.out_dir) / "result.json"
    return result.exists() and json.loads(result.read_text()).get("epochs") == cfg.epochs


def evaluate_run(cfg, spec: EvalSpec, corrupted_cache: dict | None = None) -> dict[str, Any]:
    """Clean metrics of best and last checkpoints, and the corruption sweep of the last one;
    cached in the run's eval.json. ``corrupted_cache`` shares corrupted images between runs."""
    import torch

    from tgd_core.core.devices import select_device
    from tgd_core.data.datasets import load_dataset
    from tgd_core.evaluation.metrics import evaluate_model, model_input_transform, robustness_sweep
    from tgd_core.nets.checkpoints import load_checkpoint

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
        ckpt = load_checkpoint(Path(cfg.out_dir) / ("best.pt" if which == "best" else "latest.pt"))
        model = ckpt.build(device)
        if cfg.channels_last:  # as the run trained: 1.4x faster inference on a CPU
            model = model.to(memory_format=torch.channels_last)
        transform = model_input_transform(ckpt.input_kind, ckpt.config)
        result = evaluate_model(model, images, labels, ckpt.normalization, transform=transform,
                                device=device)
        out[which] = {**result.summary(), "epoch": ckpt.epoch,
                      "reliability": result.to_dict()["reliability"]}
        if which == "last":
            n = spec.corruption_subset or len(images)
            out["sweep"] = robustness_sweep(
                model, images[:n], labels[:n], ckpt.normalization,
                corruptions=spec.corruptions, severities=spec.severities,
                noise_sigmas=spec.noise_sigmas, seed=spec.seed, transform=transform,
                corrupted_cache=corrupted_cache, device=device)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(recipe: Recipe, evals: dict[str, list[dict]]) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of every reported number."""
    rows = []
    for name, runs in evals.items():
        row: dict[str, Any] = {"method": name, "seeds": len(runs)}
        metrics = {"best_accuracy": [r["best"]["accuracy"] for r in runs],
                   "last_accuracy": [r["last"]["accuracy"] for r in runs],
                   "last_ece": [r["last"]["ece"] for r in runs],
                   "last_nll": [r["last"]["nll"] for r in runs]}
        for sweep_row in runs[0]["sweep"]:
            cond = sweep_row["corruption"] if sweep_row["sigma"] is None else "noise"
            level = sweep_row["severity"] if sweep_row["sigma"] is None else sweep_row["sigma"]
            label = "clean_subset" if cond == "clean" else f"{cond}@{level}"
            metrics[label] = [next(s["accuracy"] for s in r["sweep"]
                                   if (s["corruption"], s["severity"], s["sigma"])
                                   == (sweep_row["corruption"], sweep_row["severity"],
                                       sweep_row["sigma"])) for r in runs]
        for key, values in metrics.items():
            row[f"{key}_mean"], row[f"{key}_std"] = _mean_std(values)
        corr = [k for k in metrics if "@" in k and not k.startswith("noise@")]
        if corr:
            per_seed = [statistics.fmean(metrics[k][i] for k in corr) for i in range(len(runs))]
            row["corrupted_mean_mean"], row["corrupted_mean_std"] = _mean_std(per_seed)
        rows.append(row)
    return rows


def write_reports(recipe: Recipe, out: Path, rows: list[dict], evals: dict[str, list[dict]],
                  durations: dict[str, float]) -> None:
    import csv

    keys = sorted({k for r in rows for k in r}, key=lambda k: (k != "method", k != "seeds", k))
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    (out / "summary.json").write_text(json.dumps({"recipe": recipe.model_dump(), "rows": rows,
                                                  "train_seconds": durations}, indent=2) + "\n")

    def pm(r, k):
        return (f"{r[f'{k}_mean']:.2f} ± {r[f'{k}_std']:.2f}" if f"{k}_mean" in r else "–")

    lines = [f"# Experiment `{recipe.name}`", "", recipe.description.strip(), "",
             f"Seeds: {recipe.seeds}. Mean ± std over seeds. Accuracy in %, ECE as a fraction "
             "(15 bins), NLL in nats. *best* = the epoch with the highest test accuracy "
             "(selected on the test set, as the reference code does); *last* = the final epoch.",
             "", "| method | best acc | last acc | last ECE | last NLL | mean corrupted acc |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        ece = f"{r['last_ece_mean']:.4f} ± {r['last_ece_std']:.4f}"
        lines.append(f"| {r['method']} | {pm(r, 'best_accuracy')} | {pm(r, 'last_accuracy')} | "
                     f"{ece} | {pm(r, 'last_nll')} | {pm(r, 'corrupted_mean')} |")
    spec = recipe.evaluation
    lines += ["", f"Accuracy of the last epoch under each corruption (first "
              f"{spec.corruption_subset or 'all'} images of `{spec.split}`), averaged over "
              f"severities {', '.join(map(str, spec.severities))}:", "",
              "| method | " + " | ".join(spec.corruptions) + " |",
              "|---|" + "---:|" * len(spec.corruptions)]
    for name, runs in evals.items():
        cells = []
        for c in spec.corruptions:
            per_seed = [statistics.fmean(s["accuracy"] for s in r["sweep"]
                                         if s["corruption"] == c) for r in runs]
            m, sd = _mean_std(per_seed)
            cells.append(f"{m:.2f} ± {sd:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Plots: `accuracy_vs_severity.html`, `reliability.html`. Full table: "
              "`results.csv`.", ""]
    (out / "results.md").write_text("\n".join(lines))
    _plots(recipe, out, evals)


def _plots(recipe: Recipe, out: Path, evals: dict[str, list[dict]]) -> None:
    import plotly.graph_objects as go

    spec = recipe.evaluation
    fig = go.Figure()
    for name, runs in evals.items():
        ys = [statistics.fmean(statistics.fmean(s["accuracy"] for s in r["sweep"]
                                                if s["severity"] == sev and s["sigma"] is None
                                                and s["corruption"] != "clean") for r in runs)
              for sev in spec.severities]
        fig.add_trace(go.Scatter(x=list(spec.severities), y=ys, mode="lines+markers", name=name))
    fig.update_layout(title="Accuracy vs corruption severity (mean over corruptions and seeds)",
                      xaxis_title="severity", yaxis_title="accuracy (%)", template="plotly_white")
    fig.write_html(out / "accuracy_vs_severity.html", include_plotlyjs="cdn")
    rel = go.Figure()
    rel.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect",
                             line=dict(dash="dash", color="#999")))
    for name, runs in evals.items():
        bins = [b for b in runs[0]["last"]["reliability"] if b["count"]]
        rel.add_trace(go.Scatter(x=[b["confidence"] for b in bins],
                                 y=[b["accuracy"] for b in bins], mode="lines+markers",
                                 name=f"{name} (seed {recipe.seeds[0]})"))
    rel.update_layout(title="Reliability diagrams (last epoch)", xaxis_title="confidence",
                      yaxis_title="accuracy", template="plotly_white")
    rel.write_html(out / "reliability.html", include_plotlyjs="cdn")


def run_experiment(recipe: Recipe, out: str | Path, *, only: list[str] | None = None,
                   progress: bool | None = None, log=print, report: bool = True, ctx=None
                   ) -> list[dict[str, Any]]:
    """Train what is missing, evaluate, write the reports (unless ``report=False``, e.g. for
    parallel partial runs); returns the summary rows. ``ctx`` (a job context) sees each run's
    progress scaled to the whole experiment and can stop it at a step boundary. Under
    ``torchrun`` every run trains data-parallel; rank 0 evaluates and reports (the other ranks
    return no rows)."""
    from tgd_core.core import distributed
    from tgd_core.training import run_training

    out = Path(out)
    dist, _ = distributed.setup(recipe.common.get("device", "auto"))
    if not dist.is_main:
        log = _quiet
    else:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(recipe.model_dump_json(indent=2) + "\n")
    runs = plan(recipe, out)
    durations: dict[str, float] = {}
    selected = [(label, cfg) for label, cfg in runs
                if not only or label.startswith(("teacher", "init"))
                or label.split(" seed ")[0] in only]
    chosen = {label for label, _ in selected}
    for i, (label, cfg) in enumerate(selected):
        if finished(cfg):
            log(f"[done] {label}")
        else:
            resume = (Path(cfg.out_dir) / "latest.pt").exists()
            log(f"[{'resume' if resume else 'train'}] {label} -> {cfg.out_dir}")
            t0 = time.perf_counter()
            run_training(cfg, resume=resume, progress=progress,
                         ctx=_ScaledContext(ctx, i, len(selected), label) if ctx else None)
            log(f"[done] {label} in {time.perf_counter() - t0:.0f} s")
        durations[label] = json.loads((Path(cfg.out_dir) / "result.json").read_text()).get(
            "train_seconds", 0.0)
    if not dist.is_main:
        return []
    evals: dict[str, list[dict]] = {}
    corrupted: dict = {}
    for label, cfg in runs:
        if " seed " not in label or label not in chosen:
            continue
        name = label.split(" seed ")[0]
        log(f"[evaluate] {label}")
        evals.setdefault(name, []).append(evaluate_run(cfg, recipe.evaluation, corrupted))
    rows = summarise(recipe, evals)
    if report:
        write_reports(recipe, out, rows, evals, durations)
        log(f"results: {out / 'results.md'}")
    return rows


def _quiet(message: str) -> None:
    """The log of ranks other than 0 under torchrun."""


class _ScaledContext:
    """A job context seen by run ``index`` of ``total``: progress scaled to the experiment."""

    def __init__(self, ctx, index: int, total: int, label: str) -> None:
        self.ctx, self.index, self.total, self.label = ctx, index, total, label

    def progress(self, fraction, epoch=None, eta=None, message=None):
        self.ctx.progress((self.index + fraction) / self.total, epoch=epoch,
                          message=f"{self.label}: epoch {epoch}")

    def log(self, row):
        self.ctx.log({"run": self.label, **row})

    def should_stop(self):
        return self.ctx.should_stop()


def main_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class ExperimentJob(BaseModel):
    """Config of an ``experiment`` job: a recipe file, where to write, which rows."""

    model_config = ConfigDict(extra="forbid")
    recipe: str
    out: str | None = None
    only: list[str] | None = None

    def model_post_init(self, _context: Any) -> None:
        Recipe.load(self.recipe)  # a bad recipe is rejected at submit time


def run_experiment_job(cfg: ExperimentJob, ctx) -> dict[str, Any]:
    """Runner of the ``experiment`` job kind (resumes its runs; stops at a step boundary)."""
    from tgd_core.jobs import JobStopped
    from tgd_core.training import Stopped

    recipe = Recipe.load(cfg.recipe)
    out = Path(cfg.out) if cfg.out else ctx.run_dir / "experiment"
    try:
        rows = run_experiment(recipe, out, only=cfg.only, progress=False, ctx=ctx,
                              log=lambda m: print(m, flush=True))
    except Stopped as exc:
        raise JobStopped(str(exc)) from None
    return {"results": str(out / "results.md"), "rows": rows}
