"""Every shipped checkpoint loads and reproduces its card's clean accuracy (1,000-image slice);
the best TGD student is its named recipe's row."""

from __future__ import annotations

import json

import pytest

from tgd_core.core.paths import PROJECT_ROOT
from tgd_core.data.datasets import load_cifar10
from tgd_core.evaluation.metrics import evaluate_model, model_input_transform
from tgd_core.nets.checkpoints import load_checkpoint

SHIPPED = sorted((PROJECT_ROOT / "checkpoints").glob("*.pt"))


def test_the_six_models_are_shipped_with_cards():
    names = {p.stem for p in SHIPPED}
    assert names == {"t1_wrn16_3_raw", "t2_wrn16_1_pi", "student_scratch", "student_kd",
                     "student_tgd", "student_tgd_best"}
    assert sum(p.stat().st_size for p in SHIPPED) < 20 * 2**20
    for p in SHIPPED:
        card = json.loads(p.with_suffix(".json").read_text())
        assert card["role"] in ("teacher1", "teacher2", "student")
        assert p.with_suffix(".md").exists()


@pytest.mark.usefixtures("cifar_test_images")
@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_card_accuracy_reproduces(path):
    card = json.loads(path.with_suffix(".json").read_text())
    ckpt = load_checkpoint(path)
    assert ckpt.optimizer is None and ckpt.training_state is None  # weights only
    images, labels = load_cifar10("test_lossless_1k")
    result = evaluate_model(ckpt.build(), images, labels, ckpt.normalization,
                            transform=model_input_transform(ckpt.input_kind, ckpt.config))
    assert round(result.accuracy, 2) == card["test_batch_lossless_1k"]["accuracy"]
    assert result.n == 1000


def test_the_best_tgd_student_is_its_recipes_row_and_was_trained_with_its_settings(tmp_path):
    from tgd_core.experiments.plan import plan
    from tgd_core.experiments.recipe import Recipe

    card = json.loads((PROJECT_ROOT / "checkpoints" / "student_tgd_best.json").read_text())
    assert card["recipe"].startswith("recipes/tgd_best.yaml (")
    recipe = Recipe.load(PROJECT_ROOT / "recipes" / "tgd_best.yaml")
    row, seed = card["training_run"].split("/")[-2:]
    assert row in recipe.methods and int(seed.removeprefix("seed")) in recipe.seeds
    planned = dict(plan(recipe, tmp_path / "tgd_best"))
    cfg = planned[f"{row} seed {seed.removeprefix('seed')}"]
    saved = load_checkpoint(PROJECT_ROOT / "checkpoints" / "student_tgd_best.pt").config
    for field in ("method", "method_params", "epochs", "lr", "schedule", "batch_size", "seed",
                  "train_subset", "student", "augment"):
        assert saved.get(field) == getattr(cfg, field), field
    assert saved["method_params"] == {} and saved["init_student"]  # the paper's TGD
