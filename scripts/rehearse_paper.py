"""recipes/paper.yaml in miniature, with the settings the device trains it with: every method
and parameter of the recipe, its WRN16-3 teachers, bf16 autocast, channels_last, no
augmentation (teacher targets cached; live for SP's and TGD's per-batch similarity maps), the
fast loop and runs in parallel processes — on 64 training images for two epochs, on the CPU.
What a device session would run first, run here.

    .venv/bin/python scripts/rehearse_paper.py [--compile] [--parallel 2] [--out DIR]
    # under the device's Python and torch, in the venv scripts/check_device_torch.sh builds:
    /tmp/device_env_2.11.0/venv/bin/python scripts/rehearse_paper.py --compile

``--compile`` also compiles every run's step with torch.compile (inductor on the CPU: minutes),
as CUDA does by default. Exit 0 when every run finished and, with ``--compile``, trained
compiled (``result.json``'s ``compiled_step``); otherwise each failing run is named.
tests/test_experiments.py runs it without ``--compile``.
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

MINIATURE = {"train_subset": 64, "test_split": "test_lossless_1k", "test_subset": 32,
             "epochs": 2, "milestones": [1], "batch_size": 32, "threads": 1, "device": "cpu",
             "engine": "fast", "sync_every_steps": 2}
EVALUATION = {"split": "test_lossless_1k", "subset": 32, "corruption_subset": 16,
              "corruptions": ["gaussian_noise", "contrast"], "severities": [1, 5],
              "noise_sigmas": [0.1]}


def miniature_recipe(compile_step: bool, recipe: Path = ROOT / "recipes/paper.yaml") -> dict:
    """The recipe with its data, schedule and evaluation shrunk (seed 0, no ``reuse``);
    everything else as the device runs it."""
    paper = yaml.safe_load(recipe.read_text())
    paper.pop("reuse", None)
    paper["common"].update(MINIATURE, compile=compile_step)
    return {**paper, "seeds": [0], "evaluation": EVALUATION}


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


def rehearse(out: Path, compile_step: bool, parallel: int) -> list[str]:
    """Train and report the miniature into ``out``; the problems found."""
    from tgd_core.cli import main as tgd

    recipe = miniature_recipe(compile_step)
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper_miniature.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    status = tgd(["experiment", str(out / "paper_miniature.yaml"), "--out", str(out / "exp"),
                  "--no-progress", "--parallel", str(parallel)])
    found = problems(out / "exp", recipe, compile_step)
    return found + ([f"tgd experiment exited {status}"] if status else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true", help="torch.compile every step")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the experiment here (default: a "
                        "temporary folder)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        found = rehearse(args.out or Path(tmp), args.compile, args.parallel)
    for line in found:
        print(f"rehearse_paper: {line}", file=sys.stderr)
    print(f"rehearse_paper: {'FAILED' if found else 'ok'}: recipes/paper.yaml in miniature, "
          f"compile {'on' if args.compile else 'off'}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
