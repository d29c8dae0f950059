"""benchmarks/bench_gpu.py end to end on the CPU with tiny sizes: the first command of a device
session must not be where a broken benchmark is found (no timing assertions)."""

from __future__ import annotations

import json
import sys
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_gpu  # noqa: E402


def test_matmul_rate_is_measured_in_the_training_precision():
    rate, what = bench_gpu.matmul_tflops("cpu", repeats=1, warmup=1)
    assert rate > 0 and what == "measured in this run: 1024³ float32 matrix product"


def test_every_case_is_measured_and_published(tmp_path, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    figures, doc = tmp_path / "bench_gpu.json", tmp_path / "benchmarks.md"
    assert bench_gpu.main(["--device", "cpu", "--steps", "1", "--batch", "4", "--parallel", "1",
                           "--json", str(figures)]) == 0
    results = json.loads(figures.read_text())
    assert [r["case"] for r in results["cases"]] == [c[0] for c in bench_gpu.CASES]
    assert results["peak_source"].startswith("measured in this run") and not results["compile"]
    for row in results["cases"]:
        assert min(row["standard"], row["fast"]) > 0 and "aggregate" not in row
        assert row["speedup"] == pytest.approx(row["fast"] / row["standard"])
        assert row["fast_peak_fraction"] == pytest.approx(
            row["fast_tflops"] / results["peak_tflops"])
    wrn16_1, wrn16_3, wrn16_3_pi = (r["flops_per_image"] for r in results["cases"])
    assert wrn16_1 < wrn16_3 < wrn16_3_pi  # wider, then larger inputs

    assert bench_gpu.main(["--publish-json", str(figures), "--write", str(doc)]) == 0
    table = doc.read_text()
    assert "<!-- gpu:begin -->" in table and "WRN16-3 PI 6×50×50" in table
    assert "--device cpu --steps 1 --batch 4 --parallel 1" in table
    assert "torch.compile failed" not in table

    # a case whose fast runs could not compile (they trained on eagerly) is named under the table
    results["cases"][1]["compile_error"] = "BackendCompilerFailed: triton: no ptxas"
    figures.write_text(json.dumps(results))
    assert bench_gpu.main(["--publish-json", str(figures), "--write", str(doc)]) == 0
    assert ("WRN16-3 raw: torch.compile failed (BackendCompilerFailed: triton: no ptxas), so "
            "its fast loop ran eagerly.") in doc.read_text()


def test_concurrent_runs_and_a_given_peak(tmp_path, monkeypatch):
    """``--parallel 2``: two spawned processes, their aggregate; ``--peak-tflops`` is used and
    said. The output folder of a device run (``$OUT``) gets the figures too."""
    monkeypatch.setenv("OUT", str(tmp_path))
    monkeypatch.setattr(bench_gpu, "CASES", bench_gpu.CASES[:1])
    bench_gpu.main(["--device", "cpu", "--steps", "1", "--batch", "2", "--parallel", "2",
                    "--peak-tflops", "0.5"])
    results = json.loads((tmp_path / "bench_gpu.json").read_text())
    assert (results["peak_tflops"], results["peak_source"]) == (0.5, "given (--peak-tflops)")
    row = results["cases"][0]
    assert row["aggregate"] > 0 and len(row["aggregate_per_run"]) == 2
    assert row["aggregate_peak_fraction"] == pytest.approx(row["aggregate_tflops"] / 0.5)


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--parallel", "0"], ["--peak-tflops", "-1"]])
def test_bad_arguments_are_refused_in_one_line(bad, capsys):
    with pytest.raises(SystemExit):
        bench_gpu.main(bad)
    assert "must be positive" in capsys.readouterr().err


def test_the_fast_loop_on_cuda_graphs_is_measured_and_its_failure_named(monkeypatch):
    """The CUDA-graphs column (on the CPU the mode compiles nothing: the plumbing is what is
    checked): measured beside the others, the aggregate run in the faster mode; a failure is
    named under the table and the other figures stand."""
    args = SimpleNamespace(device="cpu", steps=1, batch=2, parallel=2, compile=True)
    case, calls = bench_gpu.CASES[0], []
    real_measure = bench_gpu.measure

    def measure(engine, case, args, barrier=None, compile_mode="default", fail=False):
        calls.append((engine, compile_mode))
        if compile_mode == bench_gpu.GRAPHS and fail:
            raise RuntimeError("accessing tensor output of CUDAGraphs that has been overwritten")
        result = real_measure(engine, case, args, barrier, compile_mode)
        if compile_mode == bench_gpu.GRAPHS:
            result["images_per_second"] = 1e9  # as if the graphs were the faster
        return result

    def concurrent(case, args, compile_mode):
        calls.append(("aggregate", compile_mode))
        return {"images_per_second": 1.0, "per_run": [0.5, 0.5]}

    monkeypatch.setattr(bench_gpu, "measure", measure)
    monkeypatch.setattr(bench_gpu, "concurrent", concurrent)
    row = bench_gpu.add_rates(bench_gpu.measure_case(case, args, graphs=True), 1.0)
    assert calls == [("standard", "default"), ("fast", "default"), ("fast", bench_gpu.GRAPHS),
                     ("aggregate", bench_gpu.GRAPHS)]
    assert row["graphs"] == 1e9 and row["aggregate_mode"] == bench_gpu.GRAPHS

    monkeypatch.setattr(bench_gpu, "measure", partial(measure, fail=True))
    failed = bench_gpu.add_rates(bench_gpu.measure_case(case, args, graphs=True), 1.0)
    assert "graphs" not in failed and failed["aggregate_mode"] == "default"
    assert failed["graphs_error"].startswith("RuntimeError: accessing tensor output")
    assert min(failed["standard"], failed["fast"], failed["aggregate"]) > 0
    results = {"device": "cpu", "torch": "x", "batch": 2, "steps": 1, "parallel": 2,
               "peak_tflops": 1.0, "compile": True, "cases": [row, failed]}
    text = "\n".join(bench_gpu.table(results, "cmd"))
    assert "| 1 (graphs) |" in text and "| failed |" in text
    assert "first (warm-up) epoch, compilation included, in one process: WRN16-1 raw " in text
    assert row["graphs_warmup_seconds"] > 0 and "(on CUDA graphs" in text
    assert "the fast loop on CUDA graphs failed (RuntimeError: accessing tensor output" in text
