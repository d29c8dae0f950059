"""A device recipe in miniature, with the settings the device trains it with: every teacher,
method and parameter of the recipe (``extends`` and other recipes' teachers resolved), bf16
autocast, channels_last, cached and live teachers, on-the-fly PIs where a row augments, the fast
loop and runs in parallel processes — on 64 training images for two epochs, on the CPU. What a
device session would run first, run here.

    .venv/bin/python scripts/rehearse_recipe.py [RECIPE] [--compile] [--parallel 2] [--out DIR]
    # under the device's Python and torch, in the venv scripts/check_device_torch.sh builds:
    /tmp/device_env_2.11.0/venv/bin/python scripts/rehearse_recipe.py --compile
    /tmp/device_env_2.11.0/venv/bin/python scripts/rehearse_recipe.py recipes/ablation.yaml

RECIPE: recipes/paper.yaml by default. ``--compile`` also compiles every run's step with
torch.compile (inductor on the CPU: minutes), as CUDA does by default. Exit 0 when every run
finished and, with ``--compile``, trained compiled (``result.json``'s ``compiled_step``);
otherwise each failing run is named. tests/test_experiments.py runs both recipes without
``--compile``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER = ROOT / "recipes/paper.yaml"
MINIATURE = {"train_subset": 64, "test_split": "test_lossless_1k", "test_subset": 32,
             "epochs": 2, "milestones": [1], "batch_size": 32, "threads": 1, "device": "cpu",
             "engine": "fast", "sync_every_steps": 2}
EVALUATION = {"split": "test_lossless_1k", "subset": 32, "corruption_subset": 16,
              "corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5],
              "noise_sigmas": [0.1]}


def miniature_recipe(compile_step: bool, recipe: Path = PAPER) -> dict:
    """The recipe resolved (``extends``, teachers of other recipes) with its data, schedule and
    evaluation shrunk — in ``common`` and in every teacher entry, which a reference to another
    recipe's teacher fills with that recipe's settings — seed 0, nothing reused or taken from a
    checkpoint; everything else as the device runs it."""
    from tgd_core.experiments.recipe import Recipe

    resolved = Recipe.load(recipe).model_dump(mode="json")
    shrunk = {*MINIATURE, "compile", "checkpoint"}
    teachers = {role: {k: v for k, v in spec.items() if k not in shrunk}
                for role, spec in resolved["teachers"].items()}
    common = {**resolved["common"], **MINIATURE, "compile": compile_step}
    return {**resolved, "common": common, "teachers": teachers, "reuse": [], "seeds": [0],
            "evaluation": EVALUATION}


def run_ids(recipe: dict) -> list[str]:
    """Every run's folder in the experiment: teachers, init student, each method's seed 0."""
    return [*(f"teachers/{t}" for t in recipe["teachers"]), "init",
            *(f"{m}/seed0" for m in recipe["methods"])]


def problems(out: Path, recipe: dict, compile_step: bool) -> list[str]:
    """What went wrong, a line per run (none: all trained, compiled where asked)."""
    found = []
    for run in run_ids(recipe):
        path = out / run / "result.json"
        if not path.is_file():
            found.append(f"{run}: not finished")
            continue
        result = json.loads(path.read_text())
        if result.get("compiled_step") is not compile_step:
            found.append(f"{run}: compiled_step {result.get('compiled_step')} "
                         f"({result.get('compile_error', 'compile not asked')})")
    return found


def rehearse(out: Path, compile_step: bool, parallel: int, recipe: Path = PAPER) -> list[str]:
    """Train and report the miniature of ``recipe`` into ``out``; the problems found."""
    from tgd_core.cli import main as tgd

    miniature = miniature_recipe(compile_step, recipe)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{recipe.stem}_miniature.yaml"
    path.write_text(yaml.safe_dump(miniature, sort_keys=False))
    status = tgd(["experiment", str(path), "--out", str(out / "exp"), "--no-progress",
                  "--parallel", str(parallel)])
    found = problems(out / "exp", miniature, compile_step)
    return found + ([f"tgd experiment exited {status}"] if status else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", nargs="?", type=Path, default=PAPER,
                        help="the recipe (default: recipes/paper.yaml)")
    parser.add_argument("--compile", action="store_true", help="torch.compile every step")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the experiment here (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = rehearse(args.out or Path(tmp), args.compile, args.parallel, args.recipe)
    for line in found:
        print(f"rehearse_recipe: {line}", file=sys.stderr)
    print(f"rehearse_recipe: {'FAILED' if found else 'ok'}: {args.recipe} in miniature, "
          f"compile {'on' if args.compile else 'off'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
