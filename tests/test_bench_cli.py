"""benchmarks/bench_cli.py's helpers on tiny inputs: measuring a process, reading its imports,
the job store, the `tgd pi` end-to-end path with its exact check, and the tables (no timing
assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import bench_cli  # noqa: E402


def test_run_measured_reports_the_child_alone():
    """The child's own peak RSS: at least what it allocates, and not this process's (which a
    plain fork + exec would report after this test holds 300 MB)."""
    held = np.ones(300 << 17)  # 300 MiB in this process
    small = bench_cli.run_measured([sys.executable, "-c", "pass"])
    big = bench_cli.run_measured([sys.executable, "-c", "b = bytearray(200 << 20); "
                                  "b[::4096] = b'x' * len(b[::4096]); print('done')"])
    assert held.sum() == 300 << 17
    assert small.seconds > 0 and 0 < small.peak_rss_mb < 100
    assert big.peak_rss_mb > 200 and big.stdout.strip() == "done"


def test_run_measured_names_a_failing_command_and_its_last_error_line():
    code = "import sys; print('first', file=sys.stderr); print('bad input', file=sys.stderr); " \
           "sys.exit(3)"
    with pytest.raises(SystemExit, match=r"exited 3: bad input$"):
        bench_cli.run_measured([sys.executable, "-c", code])


def test_imported_modules_sees_what_a_process_imports():
    imports = bench_cli.imported_modules([sys.executable, "-c", "import email.mime.text"])
    assert "email" in imports.packages and "json" not in imports.packages
    assert 0 < imports.packages["email"] <= imports.total_s
    assert imports.largest(count=1, skip=()).split()[0] in imports.packages
    assert "email" not in bench_cli.imported_modules([sys.executable, "-c", "pass"]).packages


def test_help_commands_cover_every_command_and_jobs_action():
    found = {" ".join(a) for a in bench_cli.help_commands()}
    assert {"--help", "pi --help", "distill --help", "jobs list --help",
            "jobs worker --help", "export --help"} <= found
    assert all(a.endswith("--help") for a in found)


def test_startup_of_tgd_help_and_a_filled_job_store(tmp_path):
    from tgd_core.jobs.store import JobStore

    last = bench_cli.fill_job_store(tmp_path / "store", jobs=8)
    with JobStore(tmp_path / "store") as store:
        statuses = sorted(j.status for j in store.list())
    assert last == 8 and statuses == ["failed", "failed", "queued", "queued"] + ["succeeded"] * 4
    case = bench_cli.StartupCase("tgd jobs list --json", ["jobs", "list", "--json",
                                                          "--state-dir", str(tmp_path / "store")])
    row = bench_cli.measure_startup(case, repeats=2, env=None)
    assert row.best_s > 0 and row.peak_rss_mb > 0 and row.heavy == []
    table = "\n".join(bench_cli.startup_table([row], 2))
    assert ("| command | best of 2 (s) | peak RSS (MB) | imports (s): slowest packages | heavy "
            "libraries imported | < 1 s |") in table
    assert "`tgd jobs list --json`" in table


def test_fresh_state_dir_is_removed_before_each_run(tmp_path):
    fresh = tmp_path / "new"
    seen = []

    def reset():
        seen.append(fresh.exists())
        bench_cli.shutil.rmtree(fresh, ignore_errors=True)

    case = bench_cli.StartupCase("x", ["jobs", "list", "--state-dir", str(fresh)], reset=reset)
    bench_cli.measure_startup(case, repeats=2, env=None)
    assert seen == [False, True, True]  # two timed runs and the import check, each on a new dir


def test_tgd_pi_end_to_end_on_8_images_equals_the_in_process_pis(tmp_path, cifar_test_images):
    images = np.ascontiguousarray(cifar_test_images[:8])
    np.save(tmp_path / "x.npy", images)
    runs = [bench_cli.pi_end_to_end(tmp_path / "x.npy", 8, tmp_path / f"{raw}.npz", raw)
            for raw in bench_cli.RAW_ORDER]
    bench_cli.verify_pi_outputs(images, {r.raw: r.out for r in runs}, chunk=3)
    assert all(r.seconds > 0 and r.peak_rss_mb > 0 and r.size_mb > 0 for r in runs)
    sizes = {r.raw: r.size_mb for r in runs}
    assert sizes["none"] < sizes["float32"] < sizes["float64"]
    raw64 = bench_cli.npz_member(tmp_path / "float64.npz", "pi_raw")
    assert raw64.shape == (8, 6, 50, 50) and raw64.dtype == np.float64
    kernel = bench_cli.kernel_rates(images, repeats=1)
    assert sorted(kernel) == [("float64", "chunks"), ("float64", "one call"),
                              ("uint8", "chunks"), ("uint8", "one call")]
    assert bench_cli.kernel_rate(kernel, "uint8") == max(kernel[("uint8", "chunks")],
                                                         kernel[("uint8", "one call")]) > 0
    runs[0].kernel = bench_cli.kernel_run(images, raw=True)
    assert runs[0].kernel.seconds > 0 and runs[0].kernel.cpu_s > 0 and runs[0].cpu_s > 0
    pi = bench_cli.PIResults(runs, kernel, repeats=1, disk_mb_s=100.0, pi_shape=(6, 50, 50),
                             reference_rate=2.0, reference_images=3, identical=3)
    table = "\n".join(bench_cli.pi_table(pi))
    for column in ("× reference", "peak RSS (MB)", "output (MB)", "CPU (s)",
                   "`tgd pi --raw none`", "reference: ripser + persim.PersImage", "chunks",
                   "÷ kernel, best of 1", "÷ kernel run just after: wall (CPU)"):
        assert column in table
    # 100 MB/s over 15 kB (uint8) or 135 kB (float64 + uint8) an image
    assert "`--raw none` (15 kB an image) 6,667" in bench_cli.disk_floor(pi)
    assert "`--raw float64` (135 kB an image) 741" in bench_cli.disk_floor(pi)


def test_verify_refuses_an_output_that_differs_by_one_bit(tmp_path, cifar_test_images):
    images = np.ascontiguousarray(cifar_test_images[:4])
    np.save(tmp_path / "x.npy", images)
    run = bench_cli.pi_end_to_end(tmp_path / "x.npy", 4, tmp_path / "o.npz", "float64")
    member = bench_cli.npz_member(run.out, "pi_raw")
    offset = member.offset + member[0].nbytes + 8 * 7  # one value of image 1
    del member
    with open(run.out, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 1]))
    with pytest.raises(SystemExit, match=r"pi_raw of images 0\.\.3 differ"):
        bench_cli.verify_pi_outputs(images, {"float64": run.out})


def test_disk_write_rate_writes_and_removes_its_file(tmp_path):
    assert bench_cli.disk_write_rate(tmp_path, megabytes=32) > 0
    assert list(tmp_path.iterdir()) == []


def test_free_disk_check_refuses_below_twice_the_need(tmp_path):
    bench_cli.check_free_disk(tmp_path, 1)
    with pytest.raises(SystemExit, match="refuses below twice"):
        bench_cli.check_free_disk(tmp_path, bench_cli.shutil.disk_usage(tmp_path).free)
    assert bench_cli.output_bytes(10, (6, 50, 50), "float64") == 10 * 15000 * 10
    assert bench_cli.output_bytes(10, (6, 50, 50), "none") == 10 * 15000
