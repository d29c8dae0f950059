"""The compute a recipe needs: FLOPs per training image of each of its rows, and in all.

    .venv/bin/python benchmarks/recipe_flops.py [recipes/paper.yaml] [--out DIR]

For every row of the recipe's plan (``tgd experiment RECIPE --plan``: its teachers, its init
student, each method; ``extends`` and per-row settings resolved) one training step at the
run's batch size is counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products
and convolutions, forward and backward; random weights and inputs, in the run's input shapes:
the count does not depend on the values), with the teachers live and with their targets from
the teacher cache (no augmentation: logits, attention maps or features per sample; each step
still makes its similarity maps; an augmented run's teachers are live either way). Totals are
per image × images × epochs × the row's runs (the cache's one teacher pass per image is left
out: < 0.1 % of a 200-epoch run), and what is still to train (runs not finished in ``--out``
or a ``reuse`` experiment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgd_core.data.normalization import Normalization  # noqa: E402
from tgd_core.distill import get_method  # noqa: E402
from tgd_core.experiments.plan import finished, plan  # noqa: E402
from tgd_core.experiments.recipe import Recipe  # noqa: E402
from tgd_core.nets.models import build_model  # noqa: E402
from tgd_core.nets.network import Network  # noqa: E402
from tgd_core.topology.representation import compute_pis, representation_from_dict  # noqa: E402
from tgd_core.training.targets import TargetCache  # noqa: E402

TRAIN_IMAGES = {"cifar10": 50_000, "cinic10": 90_000}


def input_shapes(cfg) -> dict[str, tuple[int, ...]]:
    """C × H × W of a run's raw images and of its PI stacks (one PI of a blank image)."""
    blank = np.zeros((1, 32, 32, 3), np.uint8)
    _, pis = compute_pis(blank, representation_from_dict(cfg.pi), raw=False)
    return {"raw": (3, 32, 32), "pi": tuple(pis.shape[1:])}


def network(arch: str, kind: str, shapes: dict[str, tuple[int, ...]]) -> Network:
    """A random-weight ``arch`` reading ``kind`` inputs of the run's shape (identity
    normalisation: the values do not change the count)."""
    channels = shapes[kind][0]
    norm = Normalization((0.0,) * channels, (1.0,) * channels)
    return Network(build_model(arch, in_channels=channels), kind, norm)


def step_gflop(distiller, inputs, labels, cache: TargetCache | None = None) -> float:
    """GFLOP per image of one training step (targets, forward, loss and backward)."""
    idx = torch.arange(len(labels))
    if cache is not None:
        cache.targets(distiller, inputs, idx, 0)  # fill: the teachers' pass, not counted
    with FlopCounterMode(display=False) as counter:
        targets = cache.targets(distiller, inputs, idx, 0) if cache is not None else None
        _, terms = distiller.forward_train(inputs, labels, targets)
        sum(terms.values()).backward()
    return counter.get_total_flops() / len(labels) / 1e9


def run_gflop(cfg, teacher_archs: dict[str, tuple[str, str]]) -> tuple[float, float]:
    """(live, cached) GFLOP per training image of the run of ``cfg``; ``teacher_archs``: the
    (architecture, input kind) of each teacher checkpoint path."""
    torch.manual_seed(0)
    shapes = input_shapes(cfg)
    inputs = {k: torch.rand(cfg.batch_size, *s) for k, s in shapes.items()}
    labels = torch.randint(0, 10, (cfg.batch_size,))
    teachers = {role: network(*teacher_archs[path], shapes) for role, path in cfg.teachers.items()}
    method = get_method(cfg.method)
    distiller = method(network(cfg.student, cfg.student_input, shapes), teachers,
                       method.Params(**cfg.method_params))
    live = step_gflop(distiller, inputs, labels)
    cache, _ = TargetCache.create(distiller, cfg.batch_size, inputs, augment=cfg.augment,
                               fixed_batches=cfg.fixed_batches, max_bytes=2**50)
    return live, live if cache is None else step_gflop(distiller, inputs, labels, cache)


def teacher_architectures(runs) -> dict[str, tuple[str, str]]:
    """(architecture, input kind) of every teacher path the runs name: a planned teacher's
    config, or the checkpoint's own (a reused teacher)."""
    from tgd_core.nets.checkpoints import load_checkpoint

    archs = {str(Path(cfg.out_dir) / "latest.pt"): (cfg.student, cfg.student_input)
             for label, cfg in runs if label.startswith("teacher ")}
    for _, cfg in runs:
        for path in cfg.teachers.values():
            if path not in archs:
                ckpt = load_checkpoint(path)
                archs[path] = (ckpt.model, ckpt.input_kind)
    return archs


def rows(recipe: Recipe, out: Path) -> list[dict]:
    """Per row of the plan (a method's seeds together): runs, runs to train, image-steps a run,
    live and cached GFLOP per image."""
    runs = plan(recipe, out)
    archs = teacher_architectures(runs)
    table: dict[str, dict] = {}
    for label, cfg in runs:
        name = label.split(" seed ")[0]
        if name not in table:
            images = cfg.train_subset or TRAIN_IMAGES[cfg.dataset]
            live, cached = run_gflop(cfg, archs)
            table[name] = {"row": name, "runs": 0, "todo": 0, "image_steps": images * cfg.epochs,
                           "live": live, "cached": cached}
        table[name]["runs"] += 1
        table[name]["todo"] += not finished(cfg)
    return list(table.values())


def pflop(row: dict, key: str, runs: str = "runs") -> float:
    return row[runs] * row[key] * row["image_steps"] / 1e6


def table(name: str, found: list[dict]) -> list[str]:
    lines = [f"{name}: FLOPs per training image (FlopCounterMode) × image-steps × runs",
             "| row | runs | to train | GFLOP/image, teachers live | cached | PFLOP, live | "
             "cached | cached, to train |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in found:
        lines.append(f"| {r['row']} | {r['runs']} | {r['todo']} | {r['live']:.3f} | "
                     f"{r['cached']:.3f} | {pflop(r, 'live'):.1f} | {pflop(r, 'cached'):.1f} | "
                     f"{pflop(r, 'cached', 'todo'):.1f} |")
    totals = [sum(pflop(r, *k) for r in found)
              for k in (("live",), ("cached",), ("cached", "todo"))]
    lines.append(f"| all | {sum(r['runs'] for r in found)} | {sum(r['todo'] for r in found)} "
                 f"| | | {totals[0]:.1f} | {totals[1]:.1f} | {totals[2]:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", default=str(ROOT / "recipes/paper.yaml"))
    parser.add_argument("--out", type=Path, help="experiment folder (default "
                        "runs/experiments/<name>): what is finished there is not to train")
    args = parser.parse_args(argv)
    recipe = Recipe.load(args.recipe)
    out = args.out or ROOT / "runs/experiments" / recipe.name
    print("\n".join(table(recipe.name, rows(recipe, out))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
