"""The fast training loop (tgd_core.training.fast, issue #14) on the CPU device with tiny data:
the standard loop's numbers, exact resume, divergence, cached teacher targets, device batches.

Tolerances: on the CPU in float32 both loops run the same operations on the same batches (the
fast loop reads its totals later and sums them in another order), so the weights agree to
float32 rounding (rtol 1e-5, atol 1e-6) and the epoch's loss and accuracy to 1e-9 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tgd_core.core.errors import TGDError
from tgd_core.nets.checkpoints import load_checkpoint
from tgd_core.training import TrainConfig, run_training, targets
from tgd_core.training.fast import FastTrainer
from tgd_core.training.trainer import Stopped, Trainer, trainer_class

pytestmark = pytest.mark.usefixtures("cifar_test_images")  # needs the CIFAR-10 data

CLOSE = dict(rtol=1e-5, atol=1e-6)


def tiny(tmp_path, name: str, **changes) -> TrainConfig:
    """A seconds-long run on the CPU: 80 images in batches of 32 (the last one partial)."""
    values = dict(train_subset=80, test_split="test_lossless_1k", test_subset=32, epochs=1,
                  batch_size=32, threads=2, device="cpu", milestones=[1], augment=True,
                  channels_last=True, sync_every_steps=2, out_dir=str(tmp_path / name))
    return TrainConfig.build(**{**values, **changes})


def weights(path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path).state_dict


def rows(cfg: TrainConfig) -> list[dict]:
    """The run's metrics rows."""
    text = (Path(cfg.out_dir) / "metrics.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def assert_same_run(a: TrainConfig, b: TrainConfig) -> None:
    """Same weights (float32 rounding) and the same epoch rows (loss terms, accuracies)."""
    wa, wb = weights(f"{a.out_dir}/latest.pt"), weights(f"{b.out_dir}/latest.pt")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], **CLOSE, msg=k)
    for ra, rb in zip(rows(a), rows(b), strict=True):
        for k, v in ra.items():
            if k.startswith(("train_", "test_")):
                assert rb[k] == pytest.approx(v, rel=1e-9, abs=1e-9), k


def test_engine_selection():
    cpu = dict(device="cpu")
    assert trainer_class(TrainConfig.build(**cpu)) is Trainer  # auto: standard off CUDA
    assert trainer_class(TrainConfig.build(engine="standard", **cpu)) is Trainer
    assert trainer_class(TrainConfig.build(engine="fast", **cpu)) is FastTrainer
    with pytest.raises(TGDError, match="engine"):
        TrainConfig.build(engine="turbo")
    with pytest.raises(TGDError, match="sync_every_steps"):
        TrainConfig.build(sync_every_steps=0)


def test_device_batches_are_the_standard_batches(tmp_path):
    """Same steps, batch ids, indices, crops/flips and inputs, from any start step (a resume),
    with and without fixed batches."""
    from tgd_core.training.data import TrainData
    from tgd_core.training.fast import DeviceData

    for fixed in (False, True):
        cfg = tiny(tmp_path, "run", fixed_batches=fixed)
        data = TrainData(cfg, {"raw"}, torch.device("cpu"))
        for start in (0, 1):
            standard = list(data.train_batches(1, start))
            fast = list(DeviceData(data).train_batches(1, start))
            assert [b.step for b in fast] == [b.step for b in standard] == list(range(start, 3))
            for s, f in zip(standard, fast, strict=True):
                assert (s.batch, s.global_size) == (f.batch, f.global_size)
                assert torch.equal(s.idx, f.idx) and torch.equal(s.labels, f.labels)
                assert torch.equal(s.inputs["raw"], f.inputs["raw"])
        assert [b.global_size for b in fast] != [32, 32, 32]  # a partial batch is among them


def test_first_epoch_matches_the_standard_loop(tmp_path):
    """With augmentation and a partial last batch, two epochs (the LR steps between them)."""
    standard = tiny(tmp_path, "standard", engine="standard", epochs=2)
    fast = tiny(tmp_path, "fast", engine="fast", epochs=2)
    run_training(standard, progress=False)
    run_training(fast, progress=False)
    assert_same_run(standard, fast)
    assert [r["epoch"] for r in rows(fast)] == [1, 2]
    assert json.loads((tmp_path / "fast/result.json").read_text())["epochs"] == 2


def test_resume_gives_the_uninterrupted_weights(tmp_path):
    """Stopped at a read mid-epoch (step 2 of 3 of epoch 1), resumed: the weights and rows of
    an uninterrupted run."""

    class StopOnce:
        calls = 0

        def should_stop(self):
            StopOnce.calls += 1
            return StopOnce.calls == 1

    whole = tiny(tmp_path, "whole", engine="fast", epochs=2)
    run_training(whole, progress=False)
    parts = tiny(tmp_path, "parts", engine="fast", epochs=2)
    with pytest.raises(Stopped, match="stopped at epoch 1, step 2"):
        run_training(parts, ctx=StopOnce(), progress=False)
    state = load_checkpoint(tmp_path / "parts/latest.pt").training_state["loop"]
    assert (state["epoch"], state["step"], state["seen"]) == (0, 2, 64)
    run_training(parts, resume=True, progress=False)
    assert_same_run(whole, parts)


def test_non_finite_loss_stops_with_the_standard_message(tmp_path):
    """Epoch 2 at an absurd LR: the fast loop (reads every 2 steps) names the same step and
    loss as the standard loop (checks every step), and leaves epoch 1's finite checkpoint."""
    messages = {}
    for engine in ("standard", "fast"):
        run_training(tiny(tmp_path, engine, engine=engine, augment=False), progress=False)
        good = weights(tmp_path / engine / "latest.pt")
        diverging = tiny(tmp_path, engine, engine=engine, augment=False, epochs=2, lr=1e30)
        (tmp_path / engine / "config.json").write_text(diverging.model_dump_json())
        with pytest.raises(TGDError, match="loss became non-finite") as info:
            run_training(diverging, resume=True, progress=False)
        messages[engine] = str(info.value).replace(str(tmp_path / engine), "RUN")
        after = weights(tmp_path / engine / "latest.pt")  # the loader refuses non-finite ones
        assert all(torch.equal(good[k], v) for k, v in after.items())
        assert [r["epoch"] for r in rows(diverging)] == [1]
    assert messages["fast"] == messages["standard"]
    assert messages["fast"].startswith("training diverged at epoch 2, step ")
    assert messages["fast"].endswith("last good checkpoint: RUN/latest.pt (end of epoch 1)")


def tiny_teachers(tmp_path) -> dict[str, str]:
    """T1 (raw) and T2 (PI) trained for one tiny epoch: their ``latest.pt`` by role."""
    teachers = {}
    for role, kind in (("t1", "raw"), ("t2", "pi")):
        cfg = tiny(tmp_path, role, student_input=kind, augment=False, engine="fast")
        run_training(cfg, progress=False)
        teachers[role] = f"{cfg.out_dir}/latest.pt"
    return teachers


def teacher_counting_trainer(cfg: TrainConfig):
    """A fast-loop trainer of ``cfg`` and the list its teachers append (epoch, step) to at
    each forward pass after the cache's probe."""
    calls = []

    class Counting(FastTrainer):
        def build_target_cache(self):
            cache = super().build_target_cache()
            for t in self.distiller.teachers.values():
                t.register_forward_hook(
                    lambda *_: calls.append((self.state.epoch, self.state.step)))
            return cache

    return Counting(cfg, progress=False), calls


def test_tgd_with_cached_teacher_targets_matches_the_standard_loop(tmp_path):
    """Teachers (raw, PI) trained once; TGD without augmentation: the fast loop fills the
    target cache before its first step and never runs the teachers in a step."""
    teachers = tiny_teachers(tmp_path)
    common = dict(method="tgd", teachers=teachers, augment=False, fixed_batches=True)
    standard = tiny(tmp_path, "standard", engine="standard", **common)
    fast = tiny(tmp_path, "fast", engine="fast", **common)
    run_training(standard, progress=False)
    trainer, calls = teacher_counting_trainer(fast)
    trainer.run()
    assert trainer.cache is not None and trainer.cache_full
    assert trainer.cache.misses == 3 and len(calls) == 2 * 3  # 2 teachers × 3 batches, once
    assert_same_run(standard, fast)
    assert result(fast)["teacher_targets"].startswith("cached: the teachers' per-sample targets")


def test_on_the_fly_pis_come_from_the_host_and_match_the_standard_loop(tmp_path):
    """A PI student with augmentation: its PIs are computed from each augmented view on the
    host (the standard batches), the rest of the step is the fast loop's."""
    common = dict(student_input="pi", pi_on_the_fly=True, train_subset=40, batch_size=16)
    standard = tiny(tmp_path, "standard", engine="standard", **common)
    fast = tiny(tmp_path, "fast", engine="fast", **common)
    run_training(standard, progress=False)
    run_training(fast, progress=False)
    assert_same_run(standard, fast)


@pytest.mark.parametrize("method", ["sp", "tgd"])
def test_similarity_maps_come_from_cached_teacher_features_when_batches_change(tmp_path,
                                                                               method):
    """The paper's protocol (no augmentation, batches reshuffled every epoch): the teachers'
    features are cached by sample and each step makes its batch's similarity maps of them, so
    the teachers run only in the first epoch — and the run is the run with live teachers (the
    standard loop's, and the fast loop's), weights to float32 rounding."""
    teachers = tiny_teachers(tmp_path)
    if method == "sp":
        teachers = {"t1": teachers["t1"]}
    common = dict(method=method, teachers=teachers, augment=False, epochs=2)
    live = tiny(tmp_path, "live", engine="standard", teacher_cache=False, **common)
    run_training(live, progress=False)
    trainer, calls = teacher_counting_trainer(tiny(tmp_path, "cached", engine="fast", **common))
    trainer.run()
    assert trainer.cache is not None and trainer.cache.derive is not None
    assert set(trainer.cache.rows) >= {"t1_f1", "t1_f2", "t1_f3"}
    assert [epoch for epoch, _ in calls] == [0] * 3 * len(teachers)  # epoch 1's 3 batches
    assert_same_run(live, trainer.cfg)
    assert result(trainer.cfg)["teacher_targets"].startswith(
        "cached: the teachers' per-sample outputs")
    assert result(live)["teacher_targets"] == "live: teacher_cache is off"


def test_the_cache_budget(monkeypatch):
    """4 GiB on the CPU unless configured; on CUDA at most half the free memory, below any cap;
    a cache larger than its budget is not made (the teachers run live)."""

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert targets.cache_budget(cpu, None) == 4 * 2**30
    assert targets.cache_budget(cpu, 0.5) == 2**29
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (60 * 2**30, 80 * 2**30))
    assert targets.cache_budget(cuda, None) == 30 * 2**30
    assert targets.cache_budget(cuda, 8) == 8 * 2**30


def test_a_cache_over_its_budget_is_not_made(tmp_path, caplog):
    cfg = tiny(tmp_path, "run", method="sp", teachers={"t1": tiny_teachers(tmp_path)["t1"]},
               augment=False, engine="fast", teacher_cache_gib=1e-4)  # 80 rows need ~0.01 GiB
    trainer = FastTrainer(cfg, progress=False)
    trainer.setup(resume=False)
    assert trainer.cache is None
    served = trainer.result_extras()["teacher_targets"]
    assert served.startswith("live: no cache fits its budget of 0.0001 GiB (")
    assert served.endswith(" GiB needed)")
    assert "no cache fits its budget of 0.0001 GiB" in caplog.text


def test_a_cache_the_device_cannot_hold_says_so(tmp_path, monkeypatch, caplog):
    """Within its budget but out of device memory when allocated (a run beside others): the
    teachers run live, and ``result.json`` says that, not that the budget was too small."""
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(targets.TargetCache, "__init__", out_of_memory)
    cfg = tiny(tmp_path, "run", method="kd", teachers={"t1": tiny_teachers(tmp_path)["t1"]},
               augment=False, engine="fast")
    trainer = FastTrainer(cfg, progress=False)
    trainer.setup(resume=False)
    assert trainer.cache is None
    served = trainer.result_extras()["teacher_targets"]
    assert served.startswith("live: the cache (") and served.endswith("did not fit in the "
                                                                      "memory of cpu")
    assert "did not fit in the memory of cpu" in caplog.text


def test_tgd_without_its_similarity_term_is_mtkd_and_caches_logits_only(tmp_path):
    """β = 0 with batches reshuffled every epoch (the ablation's tgd_*_b0 rows): no feature or
    similarity map is computed or cached — the cache keeps the two teachers' logits by sample,
    not their features — and the run trains MTKD's weights bit for bit."""
    teachers = tiny_teachers(tmp_path)
    common = dict(teachers=teachers, augment=False, epochs=2, method_params={"alpha": 0.9})
    mtkd = tiny(tmp_path, "mtkd", method="mtkd", **common)
    run_training(mtkd, progress=False)
    trainer = Trainer(tiny(tmp_path, "tgd_b0", method="tgd", **{
        **common, "method_params": {"alpha": 0.9, "beta": 0}}), progress=False)
    trainer.run()
    assert set(trainer.cache.rows) == {"t1_logits", "t2_logits"} and trainer.cache.derive is None
    ref = weights(f"{mtkd.out_dir}/latest.pt")
    assert all(torch.equal(w, ref[k]) for k, w in weights(f"{trainer.out}/latest.pt").items())
    assert [r["train_sim"] for r in rows(trainer.cfg)] == [0.0, 0.0]


def test_bf16_autocast_caches_the_teacher_targets_it_computes(tmp_path):
    """The paper recipe's ``amp`` (bf16 autocast) with cached teacher targets: the cache holds
    the teachers' bf16 outputs (it learns their dtype under the steps' autocast), so a run that
    reads them from the cache is the run whose teachers run live, bit for bit — in both loops.
    (Before, the cache was sized in float32 and its first bf16 fill raised.)"""
    teachers = tiny_teachers(tmp_path)
    runs = {}
    for engine in ("standard", "fast"):
        for cache in (True, False):
            runs[engine, cache] = cfg = tiny(
                tmp_path, f"{engine}_{cache}", method="tgd", teachers=teachers, augment=False,
                fixed_batches=True, engine=engine, amp=True, teacher_cache=cache, epochs=2)
            run_training(cfg, progress=False)
    live = weights(f"{runs['standard', False].out_dir}/latest.pt")
    for cfg in runs.values():
        assert all(torch.equal(w, live[k]) for k, w in weights(f"{cfg.out_dir}/latest.pt").items())
        assert rows(cfg) and rows(cfg)[-1]["train_kd"] == rows(runs["standard", False])[-1][
            "train_kd"]


def result(cfg: TrainConfig) -> dict:
    return json.loads((Path(cfg.out_dir) / "result.json").read_text())


def one_step(trainer, loss_fn, batch) -> dict[str, dict[str, torch.Tensor]]:
    """Loss terms, logits, gradients and BatchNorm buffers after one forward and backward of
    ``loss_fn`` (the eager or compiled step) from the trainer's initial weights."""
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    inputs = trainer.step_inputs(batch)
    targets, from_rows = trainer.step_targets(inputs, batch)
    logits, losses, loss = loss_fn(inputs, batch.labels, targets, 1.0, from_rows)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    out = {"losses": {k: v.detach() for k, v in losses.items()},
           "logits": {"logits": logits.detach()},
           "grads": {n: p.grad.clone() for n, p in trainer.model.named_parameters()
                     if p.grad is not None},
           "buffers": {n: b.clone() for n, b in trainer.model.named_buffers()
                       if "running" in n}}
    trainer.model.load_state_dict(start)
    return out


@pytest.mark.parametrize("fixed_batches", [True, False])
def test_the_compiled_tgd_step_is_the_eager_step(tmp_path, fixed_batches):
    """torch.compile (inductor, here on the CPU; the default on CUDA) of the paper recipe's
    step — TGD, cached teacher targets (with batches reshuffled, the paper's protocol: the
    teachers' cached features, of which the compiled step makes the similarity maps),
    channels_last — computes the eager step: the same loss
    terms, logits and BatchNorm statistics to float32 rounding, and the same gradients to
    2 % in norm. (Compiled kernels sum in other orders, and at initialisation some gradients
    are sums that nearly cancel: an eager float32 step is itself up to 0.8 % off a float64
    one; compiled and eager measured 0.12 % apart. A wrong graph — a lost loss term, frozen
    BatchNorm statistics — is off by far more.)"""
    cfg = tiny(tmp_path, "tgd", method="tgd", teachers=tiny_teachers(tmp_path), augment=False,
               fixed_batches=fixed_batches, engine="fast", compile=True)
    trainer = FastTrainer(cfg, progress=False)
    trainer.setup(resume=False)
    batch = next(iter(trainer.batches(0)))
    assert trainer.step_targets(trainer.step_inputs(batch), batch)[1] is not fixed_batches
    eager = one_step(trainer, trainer.step_loss, batch)
    compiled = one_step(trainer, trainer.compiled_loss, batch)
    assert set(eager["losses"]) == {"ce", "kd", "sim"}
    for part in ("losses", "logits", "buffers"):
        torch.testing.assert_close(compiled[part], eager[part], rtol=1e-5, atol=1e-5)
    assert compiled["grads"].keys() == eager["grads"].keys()
    for name, grad in eager["grads"].items():
        assert (compiled["grads"][name] - grad).norm() <= 2e-2 * grad.norm(), name


def test_a_compiled_run_compiles_once_and_says_so(tmp_path):
    """A compiled run's full batches run one graph; the partial last batch of each epoch runs
    eagerly without a recompilation; result.json says the step ran compiled, and the epochs'
    losses are the eager run's to rounding (an unstable tiny run amplifies it: 2 %)."""
    from torch._dynamo.utils import counters

    eager, compiled = (tiny(tmp_path, name, engine="fast", compile=name == "compiled",
                            epochs=2, augment=False) for name in ("eager", "compiled"))
    run_training(eager, progress=False)
    torch._dynamo.reset()
    counters.clear()
    run_training(compiled, progress=False)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["recompiles"]
    assert result(compiled)["compiled_step"] and not result(eager)["compiled_step"]
    assert "compile_error" not in result(compiled)
    for re, rc in zip(rows(eager), rows(compiled), strict=True):
        assert rc["train_ce"] == pytest.approx(re["train_ce"], rel=2e-2)


def test_a_failing_compile_trains_on_eagerly(tmp_path, monkeypatch, caplog):
    """Where torch.compile's step raises (a compiler stack unlike the tested one), the run
    warns once and trains on eagerly: the weights of a run that never compiled, bit for bit,
    and result.json says why."""

    def broken_compile(fn, **options):
        def compiled(*args):
            raise RuntimeError("InductorError: no working C++ compiler\n(the traceback)")
        return compiled

    plain = tiny(tmp_path, "plain", engine="fast", compile=False, augment=False)
    run_training(plain, progress=False)
    monkeypatch.setattr(torch, "compile", broken_compile)
    fallen = tiny(tmp_path, "fallen", engine="fast", compile=True, augment=False, epochs=1)
    with caplog.at_level("WARNING", logger="tgd_core.training.fast"):
        run_training(fallen, progress=False)
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "the compiled step failed (RuntimeError: InductorError: no working C++ compiler); "
        "training on without torch.compile"]
    wp, wf = weights(f"{plain.out_dir}/latest.pt"), weights(f"{fallen.out_dir}/latest.pt")
    assert all(torch.equal(wp[k], wf[k]) for k in wp)
    assert result(fallen)["compiled_step"] is False
    assert result(fallen)["compile_error"] == ("RuntimeError: InductorError: no working C++ "
                                              "compiler")


def test_the_cuda_graphs_mode_marks_each_compiled_step(tmp_path, monkeypatch):
    """``compile_mode: reduce-overhead`` reaches torch.compile, and each compiled (full-batch)
    step first marks a new replay, after the gradients are released (the update is unchanged:
    a stand-in compiler that returns the step as it is trains the uncompiled run's weights, bit
    for bit). The default mode marks nothing."""
    options, marks = [], []

    def recording_compile(fn, **kwargs):
        options.append(kwargs)
        return fn

    plain = tiny(tmp_path, "plain", engine="fast", compile=False, augment=False)
    run_training(plain, progress=False)
    monkeypatch.setattr(torch, "compile", recording_compile)
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: marks.append(1))
    for mode in ("default", "reduce-overhead"):
        cfg = tiny(tmp_path, mode, engine="fast", compile=True, compile_mode=mode, augment=False)
        run_training(cfg, progress=False)
        assert options[-1] == {"dynamic": False, "mode": mode}
        assert len(marks) == (2 if mode == "reduce-overhead" else 0)  # 80 images: 2 full batches
        wp, wc = weights(f"{plain.out_dir}/latest.pt"), weights(f"{cfg.out_dir}/latest.pt")
        assert all(torch.equal(wp[k], wc[k]) for k in wp)
    with pytest.raises(TGDError, match="compile_mode"):
        TrainConfig.build(compile_mode="fastest")
