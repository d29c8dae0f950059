"""benchmarks/recipe_flops.py on a tiny recipe: each run's FLOPs per image, live and cached."""

from __future__ import annotations

import sys

import pytest
import yaml

from tests.test_experiments import TINY
from tgd_core.core.paths import PROJECT_ROOT

sys.path.insert(0, str(PROJECT_ROOT / "benchmarks"))

import recipe_flops  # noqa: E402


def test_every_run_is_counted_live_and_cached(tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({**TINY, "seeds": [0, 1]}))
    rows = {name: (copies, live, cached) for name, copies, live, cached
            in recipe_flops.run_rows({**TINY, "seeds": [0, 1]}, batch=4)}
    assert list(rows) == ["teacher t1", "teacher t2", "init", *TINY["methods"]]
    scratch = rows["scratch"][1]
    assert rows["init"] == (1, scratch, scratch) and rows["scratch"] == (2, scratch, scratch)
    assert rows["teacher t2"][1] > rows["teacher t1"][1] == pytest.approx(scratch)  # PIs: 6 ch.
    for method in ("kd_t1", "mtkd", "at"):  # per-sample targets: a cached step is a student's
        assert rows[method][2] == pytest.approx(scratch, rel=1e-3)
        assert rows[method][2] < rows[method][1]
    for method in ("sp", "tgd"):  # similarity maps made each step from cached features
        assert scratch < rows[method][2] < rows[method][1]
    assert recipe_flops.main([str(recipe), "--batch", "4"]) == 0
    printed = capsys.readouterr().out
    assert "tiny: batch 4, 64 image-steps a run" in printed and "| tgd | 2 |" in printed
