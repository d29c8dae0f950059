"""Distillation losses against hand-computed values, and the methods' contracts."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW
from tgd_core.distill import METHODS, get_method, losses
from tgd_core.nets.models import build_model
from tgd_core.nets.network import Network

# -- losses: values computed by hand ------------------------------------------------------------

def test_kd_loss_hand_values():
    s = torch.tensor([[0.0, 0.0]])
    t = torch.tensor([[math.log(3.0), 0.0]])  # p_T = (3/4, 1/4), p_S = (1/2, 1/2)
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    assert losses.kd_loss(s, t, 1.0).item() == pytest.approx(0.13081203594113697, rel=1e-6)
    assert losses.kd_loss(s, t, 1.0, "mean").item() == pytest.approx(0.0654060179705685,
                                                                        rel=1e-6)
    # τ = 2: p_T = (√3, 1)/(√3 + 1)
    assert losses.kd_loss(s, t, 2.0).item() == pytest.approx(0.0363407828704735, rel=1e-6)
    # batchmean averages the per-sample KL over the batch
    two = losses.kd_loss(torch.cat([s, s]), torch.cat([t, s]), 1.0)
    assert two.item() == pytest.approx(0.13081203594113697 / 2, rel=1e-6)


def test_similarity_hand_values():
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # G = [[1, 1], [1, 2]]
    assert torch.equal(losses.similarity_matrix(f), torch.tensor([[1.0, 1.0], [1.0, 2.0]]))
    # G̃_S rows (1, 1)/√2 and (1, 2)/√5 against G̃_T = I
    assert losses.similarity_loss(f, torch.eye(2)).item() == pytest.approx(0.19923301390676826)
    g2 = torch.tensor([[2.0], [0.0]])  # G2 = [[4, 0], [0, 0]]; merged 0.5/0.5 = [[2.5,.5],[.5,1]]
    merged = losses.merged_teacher_similarity([f, g2], [0.5, 0.5])
    expected = torch.tensor([[0.98058068, 0.19611614], [0.4472136, 0.89442719]])
    assert torch.allclose(merged, expected, atol=1e-7)


def test_attention_and_hint_hand_values():
    f = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # b=1, C=2, H=1, W=2: mean_c F² = (5, 2)
    q = losses.attention_map(f)
    assert torch.allclose(q, torch.tensor([[5.0, 2.0]]) / math.sqrt(29))
    assert losses.attention_loss(f, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(
        ((5 / math.sqrt(29) - 1) ** 2 + (2 / math.sqrt(29)) ** 2) / 2)
    assert losses.hint_loss(torch.ones(1, 2), torch.zeros(1, 2)).item() == 1.0


def test_kd_loss_divides_both_logits_by_the_temperature():
    # τ = 2: p_S = softmax((2 ln 2, 0) / 2) = (2/3, 1/3), p_T = (1/2, 1/2);
    # KL = 1/2 ln(3/4) + 1/2 ln(3/2) = 1/2 ln(9/8) (unscaled student logits give 1/2 ln(25/16))
    s = torch.tensor([[2 * math.log(2.0), 0.0]])
    assert losses.kd_loss(s, torch.zeros(1, 2), 2.0).item() == pytest.approx(
        0.5 * math.log(9 / 8), rel=1e-6)


def test_attention_uses_absolute_values_and_the_given_p():
    f = torch.tensor([[[[1.0, -2.0]], [[-3.0, 0.0]]]])  # b=1, C=2, H=1, W=2
    q1 = torch.tensor([[2.0, 1.0]]) / math.sqrt(5)  # p = 1: mean_c |F| = (2, 1)
    q3 = torch.tensor([[14.0, 4.0]]) / math.sqrt(212)  # p = 3: mean_c |F|³ = (14, 4)
    assert torch.allclose(losses.attention_map(f, 1.0), q1)
    assert torch.allclose(losses.attention_map(f, 3.0), q3)
    # the student's map is made with the same p as the teacher's
    assert losses.attention_loss(f, q1, p=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.attention_loss(f, q3, p=3.0).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.attention_loss(f, torch.tensor([[1.0, 0.0]]), p=1.0).item() == pytest.approx(
        ((2 / math.sqrt(5) - 1) ** 2 + 1 / 5) / 2)


def test_float32_autocast_is_switched_off_on_the_device_of_a_list_argument():
    """merged_teacher_similarity's first argument is a list of tensors: its device (not the
    CPU default) names the autocast that is switched off."""
    meta = torch.zeros(1, device="meta")
    assert losses._device_type([[meta], [0.5]]) == "meta"
    assert losses._device_type([[], 1.0]) == "cpu"


def test_similarity_is_invariant_to_the_teachers_spatial_size():
    torch.manual_seed(0)
    student = torch.randn(4, 8, 4, 4)
    teacher = torch.randn(4, 16, 8, 8)
    bigger = F.interpolate(teacher, scale_factor=2, mode="nearest")  # 16×16, G scales by 4
    g_small = losses.row_normalise(losses.similarity_matrix(teacher))
    g_big = losses.row_normalise(losses.similarity_matrix(bigger))
    assert torch.allclose(g_small, g_big, atol=1e-6)
    assert losses.similarity_loss(student, g_small).item() == pytest.approx(
        losses.similarity_loss(student, g_big).item(), rel=1e-5)


# -- methods --------------------------------------------------------------------------------------

def float32_args(args: tuple) -> list:
    """The arguments with every tensor (also in a list) cast to float32."""
    return [[y.float() for y in x] if isinstance(x, list) and isinstance(x[0], torch.Tensor)
            else x.float() if isinstance(x, torch.Tensor) else x for x in args]


def test_losses_are_computed_in_float32_inside_a_bf16_autocast():
    """Under the ``amp`` autocast every loss and teacher target is the float32 computation on
    the (bf16) network outputs cast up, bit for bit; left to autocast, the Gram matrices would
    be computed in bf16."""
    gen = torch.Generator().manual_seed(0)
    s, t = (torch.randn(16, 10, generator=gen).mul(6).bfloat16() for _ in "st")
    f_s, f_t, f_u = (torch.randn(16, 8, 4, 4, generator=gen).bfloat16() for _ in "stu")
    target = losses.merged_teacher_similarity([f_t.float(), f_u.float()], [0.5, 0.5])
    cases = [(losses.kd_loss, (s, t, 4.0)), (losses.similarity_matrix, (f_s,)),
             (losses.similarity_loss, (f_s, target)),
             (losses.merged_teacher_similarity, ([f_t, f_u], [0.5, 0.5])),
             (losses.attention_loss, (f_s, losses.attention_map(f_t.float()))),
             (losses.hint_loss, (f_s, f_t))]
    for fn, args in cases:
        expected = fn(*float32_args(args))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn(*args)
        assert got.dtype == torch.float32 and torch.equal(got, expected), fn.__name__
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert losses.similarity_matrix.__wrapped__(f_s.float()).dtype == torch.bfloat16


def networks(seed=0):
    torch.manual_seed(seed)
    return (Network(build_model("wrn16_1"), "raw", CIFAR10_RAW),
            {"t1": Network(build_model("wrn16_2"), "raw", CIFAR10_RAW),
             "t2": Network(build_model("wrn16_1", in_channels=6), "pi", CIFAR10_PI)})


@pytest.fixture
def batch():
    torch.manual_seed(1)
    return {"raw": torch.rand(6, 3, 32, 32), "pi": torch.rand(6, 6, 50, 50)}, \
        torch.tensor([0, 1, 2, 3, 4, 5])


def make(name, **params):
    student, teachers = networks()
    cls = get_method(name)
    return cls(student, {r: teachers[r] for r in cls.teacher_roles}, cls.Params(**params))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_the_student_only(name, batch):
    distiller = make(name)
    distiller.train()
    assert all(not t.training for t in distiller.teachers.values())
    logits, terms = distiller.forward_train(*batch)
    assert logits.shape == (6, 10) and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert all(p.grad is None for p in distiller.teachers.parameters())
    assert all(p.requires_grad is False for p in distiller.teachers.parameters())
    own = list(distiller.trainable_parameters())
    assert any(p.grad is not None for p in own)
    teacher_ids = {id(p) for p in distiller.teachers.parameters()}
    assert not any(id(p) in teacher_ids for p in own)


def test_student_and_teachers_see_their_own_normalisation(batch):
    """Each network reads its input normalised by its own statistics (raw: the authors'
    CIFAR-10 mean and std, TGD_METHOD.md; PI teacher: the PI statistics), as evaluation does."""
    inputs, _ = batch
    distiller = make("tgd").eval()
    student, teachers = networks()  # the same weights, evaluated alike
    for net in (student, *teachers.values()):
        net.model.eval()
    raw, pi = CIFAR10_RAW.apply(inputs["raw"]), CIFAR10_PI.apply(inputs["pi"])
    with torch.no_grad():
        assert torch.equal(distiller.student_forward(inputs), student.model(raw))
        assert torch.equal(distiller.teacher_forward("t1", inputs), teachers["t1"].model(raw))
        assert torch.equal(distiller.teacher_forward("t2", inputs), teachers["t2"].model(pi))


def test_fitnet_adapter_is_trained_and_saved():
    distiller = make("fitnet")
    assert any(p is distiller.adapter[0].weight for p in distiller.trainable_parameters())
    assert set(distiller.extra_state()) >= {"adapter.0.weight", "adapter.1.running_mean"}


def test_tgd_reduces_to_mtkd_and_kd(batch):
    """β = 0: MTKD's terms bit for bit and a zero similarity term, from the teachers' logits
    alone (no similarity map is made); α = 1 too: KD's."""
    inputs, labels = batch
    tgd0 = make("tgd", beta=0.0)
    assert set(tgd0.teacher_targets(inputs)) == {"t1_logits", "t2_logits"}
    assert not tgd0.needs_student_features and make("tgd").needs_student_features
    _, t = tgd0.forward_train(inputs, labels)
    _, m = make("mtkd").forward_train(inputs, labels)
    assert t.pop("sim").item() == 0.0
    assert t.keys() == m.keys() and all(torch.equal(t[k], m[k]) for k in m)
    _, t1 = make("tgd", alpha=1.0, beta=0.0).forward_train(inputs, labels)
    _, k = make("kd").forward_train(inputs, labels)
    assert torch.allclose(t1["ce"] + t1["kd"], k["ce"] + k["kd"])


def test_tgd_loss_formula_and_compat_mode(batch):
    inputs, labels = batch
    distiller = make("tgd")
    targets = distiller.teacher_targets(inputs)
    logits, feats = distiller.student_forward(inputs, features=True)
    ce = F.cross_entropy(logits, labels)
    kl1 = losses.kd_loss(logits, targets["t1_logits"], 4.0)
    kl2 = losses.kd_loss(logits, targets["t2_logits"], 4.0)
    sim = sum(losses.similarity_loss(f, targets[f"sim{i + 1}"]) for i, f in enumerate(feats))
    expected = 0.1 * ce + 0.9 * 16 * (0.99 * kl1 + 0.01 * kl2) + 1000 * sim
    _, terms = distiller.forward_train(inputs, labels, targets)
    assert sum(terms.values()).item() == pytest.approx(expected.item(), rel=1e-5)
    # compat: the authors' KLDivLoss() 'mean' = per-sample KL / number of classes
    _, compat = make("tgd", compat=True).forward_train(inputs, labels, targets)
    assert compat["kd"].item() == pytest.approx(terms["kd"].item() / 10, rel=1e-5)


def test_tgd_merges_the_teachers_maps_with_weights_alpha_and_one_minus_alpha():
    f1 = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # G1 = [[1, 1], [1, 2]]
    f2 = torch.tensor([[2.0], [0.0]])  # G2 = [[4, 0], [0, 0]]
    rows = {"t1_logits": torch.zeros(2, 10), "t2_logits": torch.ones(2, 10),
            **{f"t1_f{i}": f1 * i for i in (1, 2, 3)}, **{f"t2_f{i}": f2 * i for i in (1, 2, 3)}}
    targets = make("tgd", alpha=0.75).targets_from_rows(rows)
    # 0.75·G1 + 0.25·G2 = [[1.75, 0.75], [0.75, 1.5]] (times i² for layer i), rows of unit norm
    expected = torch.tensor([[1.75 / math.sqrt(3.625), 0.75 / math.sqrt(3.625)],
                             [0.75 / math.sqrt(2.8125), 1.5 / math.sqrt(2.8125)]])
    assert set(targets) == {"t1_logits", "t2_logits", "sim1", "sim2", "sim3"}
    assert all(torch.allclose(targets[f"sim{i}"], expected, atol=1e-6) for i in (1, 2, 3))
    assert torch.equal(targets["t1_logits"], rows["t1_logits"])
    assert torch.equal(targets["t2_logits"], rows["t2_logits"])
    # SP: T1's own map, row-normalised: rows (1, 1)/√2 and (1, 2)/√5
    sp = make("sp").targets_from_rows({f"t1_f{i}": f1 for i in (1, 2, 3)})
    g1 = torch.tensor([[1 / math.sqrt(2), 1 / math.sqrt(2)], [1 / math.sqrt(5), 2 / math.sqrt(5)]])
    assert set(sp) == {"sim1", "sim2", "sim3"}
    assert all(torch.allclose(sp[f"sim{i}"], g1, atol=1e-6) for i in (1, 2, 3))


@pytest.mark.parametrize("name, params", [("sp", {"gamma": 30.0}), ("at", {"beta": 7.0, "p": 3.0}),
                                          ("fitnet", {"weight": 5.0, "hint_layer": 3})])
def test_single_teacher_loss_formulas(batch, name, params):
    """SP: CE + (γ/3)·Σ_l mean((G̃_S − G̃_T1)²); AT: CE + β·Σ_l mean((Q_S − Q_T1)²) with
    Q = attention_map(F, p); FitNet: CE + w·MSE(adapter(F_S^l), F_T1^l) — over all three
    layers (the hint layer for FitNet), from T1's features of the batch."""
    inputs, labels = batch
    distiller = make(name, **params)
    _, t_feats = distiller.teacher_forward("t1", inputs, features=True)
    logits, feats = distiller.student_forward(inputs, features=True)
    ce = F.cross_entropy(logits, labels)
    if name == "sp":
        extra = 10.0 * sum(losses.similarity_loss(
            f, losses.row_normalise(losses.similarity_matrix(t))) for f, t in zip(
            feats, t_feats, strict=True))
    elif name == "at":
        extra = 7.0 * sum((losses.attention_map(f, 3.0) - losses.attention_map(t, 3.0))
                          .pow(2).mean() for f, t in zip(feats, t_feats, strict=True))
    else:
        extra = 5.0 * F.mse_loss(distiller.adapter(feats[2]), t_feats[2])
    _, terms = distiller.forward_train(inputs, labels)
    assert sum(terms.values()).item() == pytest.approx((ce + extra).item(), rel=1e-5)
    assert terms["ce"].item() == pytest.approx(ce.item(), rel=1e-6)


def test_missing_teacher_and_bad_params():
    student, teachers = networks()
    with pytest.raises(TGDError, match="needs teacher"):
        get_method("tgd")(student, {"t1": teachers["t1"]})
    with pytest.raises(TGDError, match="unknown method"):
        get_method("nope")
    with pytest.raises(ValueError):
        get_method("tgd").Params(alpha=2.0)
    for name, bad in [("kd", {"temperature": 0.0}), ("mtkd", {"lambda_kd": 1.5}),
                      ("tgd", {"beta": -1.0}), ("at", {"p": 0.0})]:
        with pytest.raises(ValueError):
            get_method(name).Params(**bad)


# -- the registry ---------------------------------------------------------------------------------

def test_each_method_module_registers_its_distiller():
    """One module per method; importing the package registers them all, under their names."""
    import importlib

    from tgd_core.distill.kd import KD
    from tgd_core.distill.mtkd import MTKD
    from tgd_core.distill.tgd import TGD

    assert list(METHODS) == ["scratch", "kd", "mtkd", "tgd", "sp", "at", "fitnet"]
    for name, cls in METHODS.items():
        assert cls.name == name and get_method(name) is cls
        assert cls.__module__ == f"tgd_core.distill.{name}"
        assert importlib.import_module(cls.__module__).__doc__  # cites the paper and the loss
    assert issubclass(TGD, MTKD) and issubclass(MTKD, KD)
    assert issubclass(TGD.Params, MTKD.Params) and issubclass(MTKD.Params, KD.Params)


def test_a_method_name_cannot_be_registered_twice():
    from tgd_core.distill import Distiller, register_method

    before = dict(METHODS)
    with pytest.raises(ValueError, match="'kd' is already registered by tgd_core.distill.kd.KD"):
        @register_method("kd")
        class Other(Distiller):
            pass
    assert METHODS == before


def test_unknown_method_names_the_choices():
    with pytest.raises(TGDError, match=r"unknown method 'nope'; choose from \['at', 'fitnet', "):
        get_method("nope")


def test_method_defaults_are_unchanged():
    defaults = {name: cls.Params().model_dump() for name, cls in METHODS.items()}
    assert defaults == {
        "scratch": {},
        "kd": {"temperature": 4.0, "lambda_kd": 0.9, "compat": False},
        "mtkd": {"temperature": 4.0, "lambda_kd": 0.9, "compat": False, "alpha": 0.99},
        "tgd": {"temperature": 4.0, "lambda_kd": 0.9, "compat": False, "alpha": 0.99,
                "beta": 3000.0},
        "sp": {"gamma": 3000.0},
        "at": {"beta": 1000.0, "p": 2.0},
        "fitnet": {"weight": 100.0, "hint_layer": 2},
    }
