"""benchmarks/recipe_flops.py on a tiny recipe: each row's FLOPs per image, live and cached."""

from __future__ import annotations

import sys

import pytest
import yaml

from tests.test_experiments import TINY
from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.experiments.recipe import Recipe

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

import recipe_flops  # noqa: E402


def test_every_row_is_counted_live_and_cached(tmp_path, capsys):
    path = tmp_path / "tiny.yaml"
    tgd_b0 = {"method": "tgd", "teachers": {"t1": "t1", "t2": "t2"}, "params": {"beta": 0}}
    path.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1],
                                    "common": {**TINY["common"], "batch_size": 4},
                                    "methods": {**TINY["methods"], "tgd_b0": tgd_b0}},
                                   sort_keys=False))
    found = {r["row"]: r for r in recipe_flops.rows(Recipe.load(path), tmp_path / "exp")}
    assert list(found) == ["teacher t1", "teacher t2", "init (scratch student)",
                           *TINY["methods"], "tgd_b0"]
    # each row's own parameters: TGD without its similarity term costs MTKD's step
    assert (found["tgd_b0"]["live"], found["tgd_b0"]["cached"]) == (
        found["mtkd"]["live"], found["mtkd"]["cached"])
    assert [(r["runs"], r["todo"], r["image_steps"]) for r in found.values()] == (
        [(1, 1, 64)] * 3 + [(2, 2, 64)] * (len(TINY["methods"]) + 1))
    scratch = found["scratch"]["live"]
    assert found["init (scratch student)"]["cached"] == scratch == found["scratch"]["cached"]
    assert found["teacher t2"]["live"] > found["teacher t1"]["live"]  # 6 PI maps of 50 × 50
    for method in ("kd_t1", "mtkd", "at"):  # per-sample targets: a cached step is a student's
        assert found[method]["cached"] == pytest.approx(scratch, rel=1e-3)
        assert found[method]["cached"] < found[method]["live"]
    for method in ("sp", "tgd"):  # the student's similarity maps stay in the step
        assert scratch < found[method]["cached"] < found[method]["live"]

    assert recipe_flops.main([str(path), "--out", str(tmp_path / "exp")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("tiny: FLOPs per training image") and "| tgd | 2 | 2 |" in printed
    total = sum(2 * r["image_steps"] * r["cached"] / 1e6 for r in found.values()
                if r["runs"] == 2) + sum(r["image_steps"] * r["cached"] / 1e6
                                         for r in found.values() if r["runs"] == 1)
    assert printed.rstrip().endswith(f"| {total:.1f} | {total:.1f} |")
