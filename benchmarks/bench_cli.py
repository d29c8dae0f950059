"""Command-line start-up and `tgd pi` end to end (issue #18: every command that neither trains
nor evaluates starts in < 1 s; `tgd pi` end to end ≥ 1000× the reference, within 2× of its
kernel's rate).

    .venv/bin/python benchmarks/bench_cli.py [--images 25600] [--startup-repeats 5]
        [--reference-images 20] [--repeats 3] [--skip-pi] [--write docs/benchmarks.md]

- **Start-up**: each command is a fresh process of the ``tgd`` entry point (``.venv/bin/tgd``,
  as the README runs it): best of ``--startup-repeats`` wall times (spawn to exit), the
  process's peak RSS (``ru_maxrss`` of ``os.wait4``, see :data:`LAUNCHER`), the time of its
  imports and the heavy libraries it imported (torch, numba, scipy, gradio: one more run with
  ``PYTHONPROFILEIMPORTTIME=1``, i.e. ``python -X importtime``). Commands: ``tgd --help`` and
  the ``--help`` of every command and jobs action (read from the real parser), ``tgd jobs list
  [--json]`` on a new state dir and on a store of 200 jobs (submitted, claimed and finished
  through :class:`JobStore`), ``tgd jobs show``, ``tgd jobs submit`` of a pi-cache job (no
  worker runs it); and apart, since it computes, ``tgd pi`` on 64 images (start-up + work).
- **``tgd pi --input X.npy --out OUT.npz``** on ``--images`` CIFAR-10 training images (written
  to a temporary .npy by the project's loader) with each ``--raw`` (float64, the default;
  none; float32): wall time, images/s, peak RSS, output size. Every output is read back (a
  memory map of its zip entries) and compared exactly with the PIs computed in-process before
  any figure is reported. In the same run: the kernel's own rate (``paper_persistence_images``
  in-process, uint8 and float64 + uint8, best of ``--repeats``), the end-to-end ÷ kernel ratio,
  and the reference (ripser + persim.PersImage, one image at a time, as bench_topology) for
  "× reference". ``--skip-pi`` leaves this part out.

Temporary files live in a ``tempfile.TemporaryDirectory`` (deleted after); the outputs need
about 5.8 GB of free disk for 25,600 images, and the script refuses below twice what it needs.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from bench_topology import best_of  # noqa: E402
from report import cpu_name, publish  # noqa: E402

from tgd_core.cli import build_parser  # noqa: E402
from tgd_core.commands.pi import CHUNK_IMAGES, pi_chunks  # noqa: E402
from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.jobs.store import JobStore  # noqa: E402
from tgd_core.topology import PaperPIConfig, paper_persistence_images  # noqa: E402
from tgd_core.topology.pi_file import RAW_DTYPES, start_writeback  # noqa: E402
from tgd_core.topology.reference import reference_paper_pis  # noqa: E402

#: Libraries a command that neither trains nor evaluates should not import (as tests/test_cli.py).
HEAVY = ("torch", "numba", "scipy", "gradio")
START_TARGET_S = 1.0  # issue #18: start-up of the non-computing commands
REFERENCE_TARGET = 1000.0  # issue #18: `tgd pi` end to end, × ripser + persim
KERNEL_TARGET = 0.5  # issue #18: end to end within 2× of the kernel's rate
STORE_JOBS = 200
PI_STARTUP_IMAGES = 64
#: Where an end-to-end run's time went (py-spy and perf on the 2-core development machine,
#: 2026-12-05), printed under the table.
WHERE_THE_TIME_GOES = [
    "Where the end-to-end time went beyond the kernel (py-spy, perf, before the fixes named "
    "here): (1) start-up, ~2 s on the busy machine, most of it importing scikit-learn (the "
    "topology's transformers, now in `tgd_core/topology/transformers.py`, imported on first "
    "use), `scipy.stats` (now `scipy.special.ndtr`, the same bits) and numba (now imported "
    "only where a numba kernel runs), and 0.5 s building the PI tables (now 0.02 s): `tgd "
    "pi` on 64 images 2.4 s → 0.74 s; (2) with raw PIs, the kernel's fresh result arrays of "
    "each chunk zeroed by the OS on first touch (perf: `clear_page` 22% of the float64 run's "
    "CPU; the chunks now reuse two sets of buffers), the copy into the page cache (10%) and "
    "the zip entry's CRC-32 (7%). Before `pi_file.start_writeback` (written bytes handed to "
    "the disk after each chunk) the final fsync waited for gigabytes of dirty pages: 36 s → "
    "13–16 s for `--raw float64` on 25,600 images, system CPU 24 s → 7.5 s. Then perf -g "
    "showed the kernel's copy into the page cache and its writeback at 41% of the run's CPU: "
    "the PI entries now start on a 4 KiB block of the file and the chunks on a block of "
    "memory, so whole blocks go to the disk around the page cache (O_DIRECT), the parked "
    "uint8 PIs too: 20,000 images, system CPU 3.7 s → 0.2–0.8 s, 2,861 → 5,273 images/s "
    "for 25,600 (with the faster kernel). Then the writer thread took 59 ms per 512-image "
    "chunk against the kernel's ~35 ms (CRC-32 20 ms, then the O_DIRECT write 27 ms, then the "
    "parked uint8 PIs; and 0.5 s at the end copying those in): both PI entries are now laid "
    "out at once and each chunk written to its place in both by an I/O thread while its "
    "CRC-32s are computed, with ISA-L (12.6 GB/s; zlib 3.7): 33 ms per chunk, bound by the "
    "disk, and no copy at the end (20,000 images in-process 3.5–3.7 s → 1.9–2.2 s). What "
    "remains beyond the kernel: start-up (~0.5 s), the disk, and the first touch of fresh "
    "memory, which is slow on this VM (274 MB: 0.03 s in a warm process, up to 2 s in a cold "
    "one).",
]
#: ``--raw`` choices in the order they run; the default first.
RAW_ORDER = ("float64", "none", "float32")


# -- running a command ------------------------------------------------------------------------


def tgd_command() -> list[str]:
    """This venv's ``tgd`` entry point (as the README runs it), else ``python -m tgd_core``."""
    script = Path(sys.executable).with_name("tgd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "tgd_core"]


@dataclass
class Run:
    """One finished process: wall seconds from spawning to reaping, its peak RSS, its output,
    and the CPU seconds (user + system, all its threads) it used."""

    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    cpu_s: float


#: Spawns ``argv[2:]``, waits for it and writes "seconds max-RSS-KiB exit-status CPU-seconds"
#: to ``argv[1]``. The measured process must not be spawned by this one: Linux keeps the RSS
#: high-water mark of the process that forks (or vforks) across ``exec``, so a child of this
#: benchmark (hundreds of MB of images and numba) would report at least this one's peak. The
#: launcher (``python -I -S``, ~10 MB, PYTHON* variables ignored) is the measured process's
#: parent instead, so its own size is the floor of every figure.
LAUNCHER = """\
import os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - t0
with open(sys.argv[1], "w") as f:
    f.write(f"{seconds!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)} "
            f"{usage.ru_utime + usage.ru_stime!r}")
"""


def run_measured(argv: list[str], env: dict[str, str] | None = None) -> Run:
    """Run ``argv`` to its end through :data:`LAUNCHER`, its output in temporary files (no
    pipe to fill): wall seconds from spawning to reaping, peak RSS (``ru_maxrss`` of the
    rusage ``os.wait4`` returns for that process alone) and CPU time. SystemExit naming the
    command and its last stderr line if it fails."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as result:
        subprocess.run([sys.executable, "-I", "-S", "-c", LAUNCHER, result.name, *argv],
                       stdout=out, stderr=err, env=env, check=True)
        seconds, max_rss_kib, status, cpu_s = result.read().split()
        stdout, stderr = (_read_text(f) for f in (out, err))
    if int(status) != 0:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_cli: `{shlex.join(argv)}` exited {status}: {last}")
    return Run(float(seconds), int(max_rss_kib) / 1024, stdout, stderr, float(cpu_s))


def _read_text(f) -> str:
    f.seek(0)
    return f.read().decode(errors="replace")


@dataclass
class Imports:
    """What a process imported: seconds of each top-level package's import (its slowest
    ``import time`` line: the outermost import of it or one of its modules, nested imports
    included) and of all imports together."""

    packages: dict[str, float]
    total_s: float

    def largest(self, count: int = 2, skip: tuple[str, ...] = ("tgd_core",)) -> str:
        """``"name s, name s"`` of the ``count`` slowest packages (ours left out)."""
        top = sorted(((t, p) for p, t in self.packages.items() if p not in skip), reverse=True)
        return ", ".join(f"{p} {t:.2f}" for t, p in top[:count])


def imported_modules(argv: list[str], env: dict[str, str] | None = None) -> Imports:
    """What a run of ``argv`` imports, from the lines ``import time: self | cumulative |
    name`` (µs; the name indented two spaces per level of nesting) that
    ``PYTHONPROFILEIMPORTTIME=1`` (``python -X importtime``) writes to stderr."""
    run = run_measured(argv, {**(env or os.environ), "PYTHONPROFILEIMPORTTIME": "1"})
    packages, total = {}, 0.0
    for line in run.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if not (line.startswith("import time:") and len(fields) == 3
                and fields[1].strip().isdigit()):
            continue
        seconds, name = int(fields[1]) / 1e6, fields[2][1:]
        total += seconds if not name.startswith(" ") else 0.0
        package = name.strip().split(".")[0]
        packages[package] = max(seconds, packages.get(package, 0.0))
    return Imports(packages, total)


# -- start-up ---------------------------------------------------------------------------------


@dataclass
class StartupCase:
    """A command (``argv`` after ``tgd``) under ``label``; ``reset`` runs, untimed, before each
    repeat (e.g. to remove a state dir so that each run finds it new)."""

    label: str
    argv: list[str]
    reset: Callable[[], None] | None = None


@dataclass
class StartupRow:
    label: str
    best_s: float
    peak_rss_mb: float
    imports: Imports

    @property
    def heavy(self) -> list[str]:
        """The :data:`HEAVY` libraries it imported."""
        return sorted(set(HEAVY) & set(self.imports.packages))


def measure_startup(case: StartupCase, repeats: int, env: dict[str, str]) -> StartupRow:
    """Best wall time of ``repeats`` fresh processes, their largest peak RSS, and what one more
    run imports (``case.reset`` before each)."""
    argv = tgd_command() + case.argv
    runs = [_after_reset(case, lambda: run_measured(argv, env)) for _ in range(repeats)]
    imports = _after_reset(case, lambda: imported_modules(argv, env))
    return StartupRow(case.label, min(r.seconds for r in runs),
                      max(r.peak_rss_mb for r in runs), imports)


def _after_reset(case: StartupCase, measure: Callable):
    if case.reset:
        case.reset()
    return measure()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-commands of ``parser`` (name → parser), none if it has none."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def help_commands(parser: argparse.ArgumentParser | None = None) -> list[list[str]]:
    """``--help`` of ``tgd``, of every command and of every nested action (``jobs list``, …),
    read from the real parser so that a new command is measured without editing this list."""
    found = [["--help"]]

    def walk(p: argparse.ArgumentParser, prefix: list[str]) -> None:
        for name, sub in _subparsers(p).items():
            found.append([*prefix, name, "--help"])
            walk(sub, [*prefix, name])

    walk(parser or build_parser(), [])
    return found


def fill_job_store(state_dir: Path, jobs: int = STORE_JOBS) -> int:
    """A store of ``jobs`` pi-cache jobs made through :class:`JobStore` as a worker would leave
    them: the first half succeeded (with a result), the next quarter failed (error and
    traceback), the rest queued. Returns the last job's id."""
    with JobStore(state_dir) as store:
        for i in range(jobs):
            last = store.submit("pi-cache", {"split": "test", "limit": i + 1}).id
        for i in range(jobs * 3 // 4):
            job = store.claim(os.getpid())
            if i < jobs // 2:
                store.finish(job.id, job.attempt, "succeeded", message="done",
                             result={"images": i + 1, "seconds": 0.5, "parts": [i]})
            else:
                store.finish(job.id, job.attempt, "failed", error="TGDError: no data",
                             traceback="Traceback (most recent call last):\n" * 20)
    return last


def startup_cases(tmp: Path) -> list[StartupCase]:
    """Every ``--help``, then the jobs commands on a new state dir and on a 200-job store
    (``jobs submit`` last: it adds a job each time)."""
    fresh, store = tmp / "new-state", tmp / "store"
    last = fill_job_store(store)
    cases = [StartupCase(f"tgd {' '.join(a)}", a) for a in help_commands()]
    on_store = ["--state-dir", str(store)]
    cases += [
        StartupCase("tgd jobs list --json (new state dir)",
                    ["jobs", "list", "--json", "--state-dir", str(fresh)],
                    reset=lambda: shutil.rmtree(fresh, ignore_errors=True)),
        StartupCase(f"tgd jobs list --json ({STORE_JOBS} jobs)", ["jobs", "list", "--json",
                                                                  *on_store]),
        StartupCase(f"tgd jobs list ({STORE_JOBS} jobs)", ["jobs", "list", *on_store]),
        StartupCase(f"tgd jobs show {last} ({STORE_JOBS} jobs)", ["jobs", "show", str(last),
                                                                  *on_store]),
        StartupCase(f"tgd jobs submit pi-cache --set split=test ({STORE_JOBS}+ jobs)",
                    ["jobs", "submit", "pi-cache", "--set", "split=test", *on_store]),
    ]
    return cases


def pi_startup_case(tmp: Path, images: np.ndarray, env: dict[str, str]) -> StartupCase:
    """``tgd pi`` on the first 64 images (it computes: start-up + work); run once first, so that
    the compiled kernels' on-disk caches (the C kernel's build, numba's) are filled as after
    any first run."""
    path = tmp / f"images{PI_STARTUP_IMAGES}.npy"
    np.save(path, images[:PI_STARTUP_IMAGES])
    argv = ["pi", "--input", str(path), "--out", str(tmp / f"pis{PI_STARTUP_IMAGES}.npz")]
    run_measured(tgd_command() + argv, env)
    return StartupCase(f"tgd pi --input images.npy ({PI_STARTUP_IMAGES} images) --out OUT.npz",
                       argv)


# -- tgd pi end to end ------------------------------------------------------------------------


def pi_size(pi_shape: tuple) -> int:
    """Values in one image's PIs (channels × rows × columns)."""
    return math.prod(pi_shape)


def output_bytes(n: int, pi_shape: tuple, raw: str) -> int:
    """Bytes of ``tgd pi --raw raw``'s output for ``n`` images (headers aside), plus the uint8
    copy it parks beside the output while writing raw PIs."""
    raw_bytes = 0 if RAW_DTYPES[raw] is None else np.dtype(RAW_DTYPES[raw]).itemsize + 1
    return n * pi_size(pi_shape) * (1 + raw_bytes)


def check_free_disk(folder: Path, needed: int) -> None:
    """SystemExit unless ``folder``'s disk has at least twice ``needed`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < 2 * needed:
        raise SystemExit(f"bench_cli: {folder} has {free / 1e9:.1f} GB free; the `tgd pi` "
                         f"outputs need {needed / 1e9:.1f} GB and this refuses below twice "
                         "that: lower --images or free some space")


@dataclass
class KernelRun:
    """One in-process kernel run: wall and CPU seconds (all of this process's threads)."""

    seconds: float
    cpu_s: float


@dataclass
class EndToEnd:
    """One ``tgd pi --input X.npy --out OUT.npz --raw raw`` run."""

    raw: str
    images: int
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    size_mb: float
    out: Path
    kernel: KernelRun | None = None  # the same PIs in this process, just after

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def pi_end_to_end(images_path: Path, n: int, out: Path, raw: str,
                  env: dict[str, str] | None = None) -> EndToEnd:
    """Run ``tgd pi`` on the ``n`` images of ``images_path`` into ``out`` with ``--raw raw``."""
    run = run_measured([*tgd_command(), "pi", "--input", str(images_path), "--out", str(out),
                        "--raw", raw], env)
    return EndToEnd(raw, n, run.seconds, run.cpu_s, run.peak_rss_mb, out.stat().st_size / 1e6,
                    out)


def npz_member(path: Path, key: str) -> np.memmap:
    """A read-only memory map of the array ``key`` of an uncompressed ``.npz`` (as ``tgd pi``
    writes by default): the zip entry's data follows its 30-byte local header, file name and
    extra field (zip APPNOTE 4.3.7), and starts with the ``.npy`` header."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise SystemExit(f"bench_cli: {path}: {key} is compressed; expected a stored entry")
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        name_len, extra_len = struct.unpack("<2H", local[26:30])
        f.seek(info.header_offset + 30 + name_len + extra_len)
        version = np.lib.format.read_magic(f)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(f)
        offset = f.tell()
    return np.memmap(path, dtype, "r", offset, shape, "F" if fortran else "C")


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal dtype, shape and bytes (so -0.0 and 0.0 differ, as they would in a file)."""
    return (a.dtype == b.dtype and a.shape == b.shape
            and np.array_equal(a.view(f"u{a.dtype.itemsize}"), b.view(f"u{b.dtype.itemsize}")))


def verify_pi_outputs(images: np.ndarray, outputs: dict[str, Path],
                      chunk: int = CHUNK_IMAGES) -> None:
    """SystemExit unless each output (``--raw`` → path) holds exactly the PIs of ``images``
    computed in-process by ``paper_persistence_images``: its entries (``pi_raw`` only with raw
    PIs), names ``0..n-1``, ``pi_uint8`` equal and ``pi_raw`` equal bit for bit in its dtype,
    image by image, one chunk of in-process PIs at a time."""
    members = {}
    for raw, path in outputs.items():
        with np.load(path) as npz:
            want = {"pi_uint8", "names", "config"} | ({"pi_raw"} if RAW_DTYPES[raw] else set())
            _check(set(npz.files) == want, path, f"entries {sorted(npz.files)}")
            _check(list(npz["names"]) == [str(i) for i in range(len(images))], path, "names")
        members[raw] = (npz_member(path, "pi_uint8"),
                        npz_member(path, "pi_raw") if RAW_DTYPES[raw] else None)
    for start in range(0, len(images), chunk):
        want_raw, want_u8 = paper_persistence_images(images[start:start + chunk])
        for raw, (got_u8, got_raw) in members.items():
            rows = slice(start, start + len(want_u8))
            _check(_same_bits(np.asarray(got_u8[rows]), want_u8), outputs[raw],
                   f"pi_uint8 of images {rows.start}..{rows.stop - 1}")
            if got_raw is not None:
                _check(_same_bits(np.asarray(got_raw[rows]), want_raw.astype(RAW_DTYPES[raw])),
                       outputs[raw], f"pi_raw of images {rows.start}..{rows.stop - 1}")
    for raw, (got_u8, _) in members.items():
        _check(len(got_u8) == len(images), outputs[raw], f"{len(got_u8)} images")


def _check(ok: bool, path: Path, what: str) -> None:
    if not ok:
        raise SystemExit(f"bench_cli: {path}: {what} differ from the PIs computed in-process")


def kernel_rates(images: np.ndarray, repeats: int) -> dict[tuple[str, str], float]:
    """Images/s of ``paper_persistence_images`` in this process, best of ``repeats`` after a
    warm-up, for each output (``uint8`` PIs alone; ``float64`` + uint8 PIs) and each way of
    calling it: ``one call`` on the whole batch, or in ``chunks`` of :data:`CHUNK_IMAGES` as
    the command calls it (``pi_chunks``, each chunk dropped: no result of gigabytes to fault
    in)."""
    paper_persistence_images(images[:64])  # compile / load the cached kernel
    calls = {"one call": lambda raw: paper_persistence_images(images, raw=raw),
             "chunks": lambda raw: _drain(pi_chunks(images, PaperPIConfig(), raw=raw))}
    return {(output, how): len(images) / best_of(lambda call=call, raw=raw: call(raw), repeats)
            for output, raw in (("uint8", False), ("float64", True))
            for how, call in calls.items()}


def _drain(chunks) -> None:
    for _ in chunks:
        pass


def kernel_run(images: np.ndarray, raw: bool) -> KernelRun:
    """One pass of the kernel over ``images`` as the command calls it (``pi_chunks``), timed
    in wall and CPU seconds."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    _drain(pi_chunks(images, PaperPIConfig(), raw=raw))
    return KernelRun(time.perf_counter() - t0, time.process_time() - cpu0)


def kernel_rate(kernel: dict[tuple[str, str], float], output: str) -> float:
    """The kernel's rate for ``output``: the faster way of calling it."""
    return max(rate for (name, _), rate in kernel.items() if name == output)


def disk_write_rate(folder: Path, megabytes: int = 1024) -> float:
    """MB/s of writing ``megabytes`` of zeros to a file in ``folder`` as ``tgd pi`` writes its
    output (16 MB blocks, :func:`start_writeback` after each, fsync at the end)."""
    block = bytes(16 << 20)
    path = folder / "disk-rate.bin"
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        for _ in range(max(1, megabytes // 16)):
            f.write(block)
            start_writeback(f)
        os.fsync(f.fileno())
    seconds = time.perf_counter() - t0
    size = path.stat().st_size
    path.unlink()
    return size / 1e6 / seconds


def reference_rate(images: np.ndarray) -> tuple[float, int]:
    """Images/s of the authors' pipeline (ripser + persim.PersImage, one image at a time; one
    pass, as bench_topology), and on how many images its float64 and uint8 PIs equal ours bit
    for bit."""
    ours_raw, ours_u8 = paper_persistence_images(images)
    identical = 0
    t0 = time.perf_counter()
    for i, image in enumerate(images):
        ref_raw, ref_u8, _ = reference_paper_pis(image)
        identical += _same_bits(ours_raw[i], ref_raw) and _same_bits(ours_u8[i], ref_u8)
    return len(images) / (time.perf_counter() - t0), identical


def kernel_for(raw: str) -> str:
    """The in-process kernel output a ``--raw`` run computes: uint8 alone without raw PIs."""
    return "uint8" if RAW_DTYPES[raw] is None else "float64"


@dataclass
class PIResults:
    """Everything the `tgd pi` part measured in one run."""

    runs: list[EndToEnd]
    kernel: dict[tuple[str, str], float]
    repeats: int
    disk_mb_s: float
    pi_shape: tuple
    reference_rate: float
    reference_images: int
    identical: int


def measure_pi(images: np.ndarray, reference_images: np.ndarray, tmp: Path,
               env: dict[str, str], repeats: int) -> PIResults:
    """Each ``--raw`` end to end, each followed at once by the same PIs in this process (so
    both meet about the same load from other work); the outputs, kept until then, verified;
    then the kernel's best rates, the disk's and the reference's."""
    pi_shape = paper_persistence_images(images[:1], raw=False)[1].shape[1:]
    check_free_disk(tmp, images.nbytes + sum(output_bytes(len(images), pi_shape, r)
                                             for r in RAW_ORDER))
    path = tmp / "images.npy"
    np.save(path, images)
    paper_persistence_images(images[:64])  # compile / load the cached kernel
    runs = []
    for raw in RAW_ORDER:
        runs.append(pi_end_to_end(path, len(images), tmp / f"pis_{raw}.npz", raw, env))
        runs[-1].kernel = kernel_run(images, raw=RAW_DTYPES[raw] is not None)
    verify_pi_outputs(images, {r.raw: r.out for r in runs})
    for r in runs:
        r.out.unlink()
    kernel = kernel_rates(images, repeats)
    ref_rate, identical = reference_rate(reference_images)
    return PIResults(runs, kernel, repeats, disk_write_rate(tmp), pi_shape, ref_rate,
                     len(reference_images), identical)


# -- report -----------------------------------------------------------------------------------


def mark(ok: bool) -> str:
    return "✓" if ok else "✗"


def startup_table(rows: list[StartupRow], repeats: int, target: bool = True) -> list[str]:
    """Markdown table of start-up rows (with the < 1 s target column when ``target``)."""
    head = (f"| command | best of {repeats} (s) | peak RSS (MB) | imports (s): slowest "
            "packages | heavy libraries imported |")
    lines = [head + (" < 1 s |" if target else ""),
             "|---|---:|---:|---|---|" + ("---|" if target else "")]
    for r in rows:
        line = (f"| `{r.label}` | {r.best_s:.2f} | {r.peak_rss_mb:,.0f} | "
                f"{r.imports.total_s:.2f}: {r.imports.largest()} | "
                f"{', '.join(r.heavy) or 'none'} |")
        lines.append(line + (f" {mark(r.best_s < START_TARGET_S and not r.heavy)} |"
                             if target else ""))
    return lines


def pi_table(pi: PIResults) -> list[str]:
    """Markdown table: each ``--raw`` end to end against its kernel and the reference, then the
    kernel and reference rows."""
    lines = ["| run | images | wall (s) | images/s | CPU (s) | peak RSS (MB) | output (MB) "
             f"| ÷ kernel, best of {pi.repeats} | ÷ kernel run just after: wall (CPU) "
             "| × reference |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in pi.runs:
        best = r.rate / kernel_rate(pi.kernel, kernel_for(r.raw))
        after = (f"{r.kernel.seconds / r.seconds:.2f} "
                 f"{mark(r.kernel.seconds / r.seconds >= KERNEL_TARGET)} "
                 f"({r.kernel.cpu_s / r.cpu_s:.2f})" if r.kernel else "")
        times = r.rate / pi.reference_rate
        default = " (default)" if r.raw == RAW_ORDER[0] else ""
        lines.append(f"| `tgd pi --raw {r.raw}`{default} | {r.images:,} | {r.seconds:.1f} "
                     f"| {r.rate:,.0f} | {r.cpu_s:.1f} | {r.peak_rss_mb:,.0f} | {r.size_mb:,.0f} "
                     f"| {best:.2f} {mark(best >= KERNEL_TARGET)} | {after} "
                     f"| {times:,.0f}× {mark(times >= REFERENCE_TARGET)} |")
    n = pi.runs[0].images
    for (output, how), rate in pi.kernel.items():
        label = "uint8 PIs" if output == "uint8" else "float64 + uint8 PIs"
        lines.append(f"| kernel in-process: `paper_persistence_images`, {label}, {how}, best "
                     f"of {pi.repeats} | {n:,} | {n / rate:.1f} | {rate:,.0f} | | | | | "
                     f"| {rate / pi.reference_rate:,.0f}× |")
    lines.append(f"| reference: ripser + persim.PersImage | {pi.reference_images:,} "
                 f"| {pi.reference_images / pi.reference_rate:.1f} | {pi.reference_rate:,.1f} "
                 "| | | | | | 1× |")
    return lines


def disk_floor(pi: PIResults) -> str:
    """The images/s the disk allows each output (its bytes per image at the disk's rate)."""
    per_image = {raw: output_bytes(1, pi.pi_shape, raw) - (0 if RAW_DTYPES[raw] is None
                                                           else pi_size(pi.pi_shape))
                 for raw in RAW_ORDER}
    return ", ".join(f"`--raw {raw}` ({b / 1e3:,.0f} kB an image) "
                     f"{pi.disk_mb_s * 1e6 / b:,.0f}" for raw, b in per_image.items())


def report(args, load: float, startup: list[StartupRow], computing: list[StartupRow],
           pi: PIResults | None) -> list[str]:
    import numba

    command = (f".venv/bin/python benchmarks/bench_cli.py --images {args.images} "
               f"--startup-repeats {args.startup_repeats} --reference-images "
               f"{args.reference_images} --repeats {args.repeats}"
               + (" --skip-pi" if args.skip_pi else ""))
    fast = sum(r.best_s < START_TARGET_S and not r.heavy for r in startup)
    slowest = max(startup, key=lambda r: r.best_s)
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, load "
        f"average {load:.1f} before the run; Python {platform.python_version()}, numba "
        f"{numba.__version__}.",
        "",
        f"Command: `{command}`",
        "",
        f"**Start-up** of the commands that neither train nor evaluate: each a fresh "
        f"`{Path(tgd_command()[0]).name}` process (the venv's entry point), best of "
        f"{args.startup_repeats} wall times from spawn to exit, the largest peak RSS of those "
        "runs (`ru_maxrss` from `os.wait4` in a ~10 MB launcher process, not this benchmark's "
        "child: Linux would count the benchmark's own RSS), and, from one more run with "
        "`PYTHONPROFILEIMPORTTIME=1` (`python -X importtime`, a little slower), the time of its "
        f"imports with the slowest packages and the heavy libraries ({', '.join(HEAVY)}) it "
        f"imported. Job stores: a new state dir (removed before each run) and one of "
        f"{STORE_JOBS} pi-cache jobs made through `JobStore` ({STORE_JOBS // 2} succeeded, "
        f"{STORE_JOBS * 3 // 4 - STORE_JOBS // 2} failed with tracebacks, "
        f"{STORE_JOBS - STORE_JOBS * 3 // 4} queued). Target (issue #18): < 1 s and no heavy "
        "import.",
        "",
        *startup_table(startup, args.startup_repeats),
        "",
        f"{fast} of {len(startup)} under {START_TARGET_S:g} s without heavy imports; slowest "
        f"`{slowest.label}` {slowest.best_s:.2f} s.",
        "",
        "A command that computes (start-up + work; the compiled kernels' on-disk caches, the "
        "C kernel's build and numba's, filled by a first run):",
        "",
        *startup_table(computing, args.startup_repeats, target=False),
    ]
    return lines + (pi_report(args, pi) if pi else [])


def pi_report(args, pi: PIResults) -> list[str]:
    return [
        "",
        f"**`tgd pi --input X.npy --out OUT.npz` end to end** on {args.images:,} CIFAR-10 "
        "training images (a uint8 .npy, memory-mapped by the command), one fresh process per "
        "`--raw`: wall time from spawn to exit (interpreter and numba start-up, PIs in chunks "
        f"of {CHUNK_IMAGES:,}, the npz streamed and fsynced), the process's peak RSS, the "
        "output's size and the CPU time of all its threads. *Kernel*: `paper_persistence_images` "
        f"on the same images in this process, best of {args.repeats}, in one call and in the "
        "command's chunks, the best ratio against the faster; and one pass in the command's "
        "chunks run just after each end-to-end run (the same load from other work; CPU ratio "
        "in brackets, which other work hardly changes). The uint8 kernel for `--raw none`, "
        "float64 + uint8 for the others. Targets (issue #18): end to end ≥ "
        f"{REFERENCE_TARGET:,.0f}× the reference and within 2× of the kernel's rate "
        f"(÷ kernel ≥ {KERNEL_TARGET}).",
        "",
        *pi_table(pi),
        "",
        f"The disk wrote {pi.disk_mb_s:,.0f} MB/s in the same run (1 GB as `tgd pi` writes, "
        f"fsynced), so no process can write faster than (images/s): {disk_floor(pi)}.",
        "",
        f"Every output was read back before reporting: `pi_uint8` of all {args.images:,} "
        "images equal to the in-process PIs and `pi_raw` equal bit for bit in its dtype "
        "(float64, or float64 cast to float32), names and entries as written. The reference "
        f"PIs equal ours bit for bit (float64 and uint8) on {pi.identical} of "
        f"{pi.reference_images} images.",
        "",
        *WHERE_THE_TIME_GOES,
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=25600, help="images for `tgd pi` end to end")
    ap.add_argument("--startup-repeats", type=int, default=5,
                    help="start-up: best of this many fresh processes per command")
    ap.add_argument("--reference-images", type=int, default=20,
                    help="images for the ripser + persim reference")
    ap.add_argument("--repeats", type=int, default=3, help="kernel: best of this many runs")
    ap.add_argument("--skip-pi", action="store_true", help="leave out `tgd pi` end to end")
    ap.add_argument("--write", help="update this Markdown file's benchmark section")
    args = ap.parse_args()
    if not 1 <= args.images <= 50000 or args.startup_repeats < 1 or args.repeats < 1 \
            or args.reference_images < 1:
        ap.error("--images must be 1..50000; --startup-repeats, --repeats and "
                 "--reference-images at least 1")
    load = os.getloadavg()[0]
    images, _ = load_cifar10("train", limit=max(args.images, args.reference_images,
                                                PI_STARTUP_IMAGES))
    with tempfile.TemporaryDirectory(prefix="bench-cli-", dir="/tmp") as name:
        tmp = Path(name)
        env = {**os.environ, "TGD_STATE_DIR": str(tmp / "state"),
               "GRADIO_ANALYTICS_ENABLED": "False"}
        startup = [measure_startup(c, args.startup_repeats, env) for c in startup_cases(tmp)]
        computing = [measure_startup(pi_startup_case(tmp, images, env), args.startup_repeats,
                                     env)]
        pi = None if args.skip_pi else measure_pi(
            images[:args.images], images[:args.reference_images], tmp, env, args.repeats)
    lines = report(args, load, startup, computing, pi)
    publish(lines, args.write, "bench_cli", "Command-line start-up and `tgd pi` end to end")


if __name__ == "__main__":
    main()
