"""The compute a recipe needs: FLOPs per training image of each of its runs, and in all.

    .venv/bin/python benchmarks/recipe_flops.py [recipes/paper.yaml] [--batch 128]

For every run of the recipe — its teachers, its init student, each method (× its seeds) —
one training step at the recipe's batch size is counted with
``torch.utils.flop_counter.FlopCounterMode`` (matrix products and convolutions, forward and
backward; random weights and inputs: the count does not depend on them), with the teachers
live and with their targets from the teacher cache (no augmentation: logits, attention maps
or features per sample; each step still makes its similarity maps). Totals are per image ×
images × epochs (the cache's one teacher pass per image is left out: < 0.1 % here).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW  # noqa: E402
from tgd_core.distill import get_method  # noqa: E402
from tgd_core.nets.models import build_model  # noqa: E402
from tgd_core.nets.network import Network  # noqa: E402
from tgd_core.training.targets import TargetCache  # noqa: E402

TRAIN_IMAGES = 50_000  # CIFAR-10's training set, unless the recipe takes a subset
PI_SHAPE = (6, 50, 50)  # paper-mode PI stacks


def network(spec: dict) -> Network:
    """A random-weight network as a recipe entry specifies it (``student``, ``student_input``)."""
    kind = spec.get("student_input", "raw")
    channels = 3 if kind == "raw" else PI_SHAPE[0]
    norm = CIFAR10_RAW if kind == "raw" else CIFAR10_PI
    return Network(build_model(spec.get("student", "wrn16_1"), in_channels=channels), kind, norm)


def step_gflop(distiller, inputs, labels, cache: TargetCache | None = None) -> float:
    """GFLOP per image of one training step (forward, loss and backward)."""
    idx = torch.arange(len(labels))
    if cache is not None:
        cache.targets(distiller, inputs, idx, 0)  # fill: the teachers' pass, not counted
    with FlopCounterMode(display=False) as counter:
        targets = cache.targets(distiller, inputs, idx, 0) if cache is not None else None
        _, terms = distiller.forward_train(inputs, labels, targets)
        sum(terms.values()).backward()
    return counter.get_total_flops() / len(labels) / 1e9


def run_rows(recipe: dict, batch: int) -> list[tuple[str, int, float, float]]:
    """(run, copies, live GFLOP/image, cached GFLOP/image) for the teachers, the init student
    and each method (copies: its seeds)."""
    torch.manual_seed(0)
    inputs = {"raw": torch.rand(batch, 3, 32, 32), "pi": torch.rand(batch, *PI_SHAPE)}
    labels = torch.randint(0, 10, (batch,))
    teachers = {name: network(spec) for name, spec in recipe["teachers"].items()}
    student = {**recipe.get("common", {}), **recipe["student"]}
    rows = []
    for name, spec in recipe["teachers"].items():
        g = step_gflop(get_method("scratch")(network(spec)), inputs, labels)
        rows.append((f"teacher {name}", 1, g, g))
    if "init" in recipe:
        g = step_gflop(get_method("scratch")(network(student)), inputs, labels)
        rows.append(("init", 1, g, g))
    seeds = len(recipe.get("seeds", [0]))
    for name, spec in recipe["methods"].items():
        roles = {role: teachers[t] for role, t in spec.get("teachers", {}).items()}
        distiller = get_method(spec.get("method", name))(network(student), roles)
        cache = TargetCache.create(distiller, batch, inputs, augment=False, fixed_batches=False,
                                   max_bytes=2**40)
        rows.append((name, len(spec.get("seeds", [])) or seeds,
                     step_gflop(distiller, inputs, labels), step_gflop(distiller, inputs, labels,
                                                                       cache)))
    return rows


def table(recipe: dict, rows, batch: int) -> list[str]:
    common = recipe.get("common", {})
    images = (common.get("train_subset") or TRAIN_IMAGES) * common.get("epochs", 200)
    lines = [f"{recipe['name']}: batch {batch}, {images:,} image-steps a run",
             "| run | runs | GFLOP/image, teachers live | cached | PFLOP, live | cached |",
             "|---|---:|---:|---:|---:|---:|"]
    total = [0.0, 0.0]
    for name, copies, live, cached in rows:
        pflop = [copies * g * images / 1e6 for g in (live, cached)]
        total = [t + p for t, p in zip(total, pflop, strict=True)]
        lines.append(f"| {name} | {copies} | {live:.3f} | {cached:.3f} | {pflop[0]:.1f} | "
                     f"{pflop[1]:.1f} |")
    lines.append(f"| all | | | | {total[0]:.1f} | {total[1]:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", type=Path, default=ROOT / "recipes/paper.yaml")
    parser.add_argument("--batch", type=int, default=None,
                        help="the batch size (default: the recipe's, else 128)")
    args = parser.parse_args(argv)
    recipe = yaml.safe_load(args.recipe.read_text())
    batch = args.batch or recipe.get("common", {}).get("batch_size", 128)
    print("\n".join(table(recipe, run_rows(recipe, batch), batch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
