"""The prepared device command for the paper protocol (issue #14): data, resume, train within
a time budget, pack the runs into ``$OUT``.

    python3 scripts/device_paper.py [--budget 540] [--parallel 6] [--recipe recipes/paper.yaml]
                                    [--out runs/experiments/paper] [--only METHOD ...]
                                    [--seeds SEED ...] [--set FIELD=VALUE ...]

On the device machine, in the repository root (docs/device.md gives the whole sequence of
calls):

0. **Packages.** The device image lacks pydantic (and its pydantic-core, annotated-types,
   typing-inspection) and plotly (the final report's plots), and its typing-extensions and
   narwhals may be too old for them (:data:`WHEELS`): ``--fetch-wheels``, run here,
   downloads their pinned x86-64/CPython 3.12 wheels into ``.stage/wheels`` (ignored, carried);
   there they are installed once into ``.stage/site`` (``--packages-only`` does only this), put
   on the ``PYTHONPATH`` of the experiment; export it for other commands
   (``PYTHONPATH=$PWD/.stage/site``).
1. **Data.** Unless ``.stage/data/cifar10`` was unpacked by an earlier call on this (warm)
   machine, verify and unpack the carried CIFAR-10 parts (scripts/stage_cifar10.py); then
   ``TGD_DATA_DIR=.stage/data`` for everything below.
2. **Earlier runs.** When the experiment folder is not here but ``.stage/runs.manifest.json``
   and its parts are (the ``$OUT`` of an earlier session, carried back), unpack them into it:
   the runner then skips finished runs and resumes the others from their ``latest.pt``.
3. **Train.** ``tgd experiment RECIPE --parallel N --stop-after S``, S = the budget less the
   time spent so far and ``--pack-reserve``: every run stops at a step boundary in time, saving
   ``latest.pt`` (exit 3), so the command ends inside the device's 10-minute limit; an
   experiment still busy a quarter of a reserve later (the evaluation of a finished recipe) is
   asked to stop (SIGTERM), asked again, then killed with its workers, all within half a
   reserve — its files are crash-safe — so that the packing always happens. A Ctrl-C or
   SIGTERM to this script stops the experiment the same way, and the packing follows.
4. **Pack.** The experiment folder into ``$OUT`` as ``runs.tar.xz.NNN`` parts of at most 15 MiB
   beside ``runs.manifest.json``, within what the device returns (8 files of 16 MiB at most,
   64 MiB in all, counting what the call left there already: :func:`out_budget`):
   every small file (configs, metrics, results, evaluations, reports) first, then the
   checkpoints of finished runs, then those of unfinished ones; what does not fit is named in
   the manifest's ``left_out`` (a later call, e.g. with ``--budget 0``, packs again). The log
   comes back as the call's output.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

import stage_cifar10  # noqa: E402

from tgd_core.core.errors import TGDError  # noqa: E402

MiB = 2**20
PART_BYTES = 15 * MiB
OUT_BYTES, OUT_FILES = 64 * MiB, 8  # what the device returns through $OUT: bytes, files
STOPPED = 3  # tgd experiment's exit status when --stop-after stopped it (resumable)


# The device image lacks pydantic and its own dependencies and plotly; its typing_extensions
# and narwhals may be older than pydantic's (>= 4.16) and plotly's (>= 1.15.1) floors, so this
# environment's versions travel too and, first on the PYTHONPATH, shadow the image's.
WHEELS = ("pydantic", "pydantic_core", "annotated_types", "typing_inspection",
          "typing_extensions", "plotly", "narwhals")


def fetch_wheels(stage: Path) -> list[Path]:
    """Here: download the wheels of :data:`WHEELS`, at the versions this environment runs,
    for the device's CPython 3.12 on x86-64 (pip, no dependencies: the others are there)."""
    from importlib.metadata import version

    dest = stage / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    platforms = [arg for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                               "manylinux2014_x86_64") for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *platforms, "-d", str(dest), *(f"{n}=={version(n)}" for n in WHEELS)],
                   check=True)
    return sorted(dest.glob("*.whl"))


def ensure_packages(stage: Path) -> Path:
    """There: install the carried wheels not yet installed into ``stage/site``; returns it."""
    site = stage / "site"
    new = [w for w in sorted((stage / "wheels").glob("*.whl"))
           if not (site / f".{w.name}.installed").exists()]
    if new:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--upgrade", "--target", str(site), *map(str, new)],
                       check=True)
        for wheel in new:
            (site / f".{wheel.name}.installed").write_text("")
    return site


def ensure_data(stage: Path) -> Path:
    """``TGD_DATA_DIR`` with CIFAR-10 unpacked (once per machine: a marker records it)."""
    data = stage / "data"
    marker = data / "cifar10" / ".verified"
    if not marker.exists():
        stage_cifar10.unpack(stage, data)
        marker.write_text("unpacked and verified against the manifest\n")
    return data


def restore_runs(stage: Path, out: Path) -> bool:
    """Unpack runs carried back from an earlier session into ``out`` (when it is absent)."""
    if out.exists() or not (stage / "runs.manifest.json").exists():
        return False
    stage_cifar10.unpack_files(stage, "runs", out)
    return True


def pack_order(out: Path) -> list[str]:
    """The experiment folder's files, most needed first: small files, then the checkpoints
    of finished runs (result.json present), then the others."""
    files = sorted(p for p in out.rglob("*") if p.is_file() and ".tmp" not in p.name)

    def rank(path: Path) -> tuple[int, int, str]:
        if path.suffix != ".pt":
            return 0, path.stat().st_size, str(path)
        done = (path.parent / "result.json").exists()
        return (1 if done else 2), path.stat().st_size, str(path)

    return [str(p.relative_to(out)) for p in sorted(files, key=rank)]


def out_budget(out_dir: Path) -> int:
    """Bytes of runs (uncompressed: xz adds a few bytes at most to incompressible data) that
    ``out_dir`` can still return in parts of :data:`PART_BYTES` beside the files there now
    and the manifest (1 MiB kept for it and xz's overhead)."""
    present = [p for p in out_dir.rglob("*") if p.is_file()] if out_dir.is_dir() else []
    room = OUT_BYTES - sum(p.stat().st_size for p in present)
    parts = OUT_FILES - 1 - len(present)
    return max(0, min(room, parts * PART_BYTES) - MiB)


def pack_runs(out: Path, dest: Path, budget_bytes: int) -> dict:
    """Pack the files of ``out`` that fit ``budget_bytes`` (uncompressed, in
    :func:`pack_order`) into ``dest``; the manifest's ``left_out`` lists the others."""
    chosen, left_out, total = [], [], 0
    for name in pack_order(out):
        size = (out / name).stat().st_size
        if total + size <= budget_bytes:
            chosen.append(name)
            total += size
        else:
            left_out.append(name)
    manifest = stage_cifar10.pack_files(out, chosen, dest, "runs", PART_BYTES, preset=3)
    manifest["left_out"] = left_out
    (dest / "runs.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def train(args, data: Path, site: Path, deadline: float) -> int:
    """``tgd experiment`` with ``--parallel`` and ``--stop-after`` (exit 0: done; 3: stopped)."""
    stop_after = deadline - time.time()
    if stop_after < 60:
        print(f"device_paper: only {stop_after:.0f} s left: not starting", flush=True)
        return STOPPED
    cmd = [sys.executable, "-m", "tgd_core", "experiment", args.recipe, "--out", str(args.out),
           "--parallel", str(args.parallel), "--no-progress", "--stop-after", f"{stop_after:.0f}"]
    if args.only:
        cmd += ["--only", *args.only]
    if args.seeds:
        cmd += ["--seeds", *map(str, args.seeds)]
    for assignment in args.set:
        cmd += ["--set", assignment]
    path = os.pathsep.join(p for p in (str(site.resolve()), os.environ.get("PYTHONPATH"))
                           if p)
    env = {**os.environ, "TGD_DATA_DIR": str(data.resolve()), "PYTHONUNBUFFERED": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": path}
    print("device_paper: " + " ".join(cmd), flush=True)
    # the runs stop by themselves at S; the evaluation after them is cut within half a reserve
    process = subprocess.Popen(cmd, cwd=ROOT, env=env, process_group=0)
    status = wait_or_stop(process, stop_after + args.pack_reserve / 4, args.pack_reserve / 4)
    if status is None:
        print("device_paper: the experiment outran its budget and was stopped (its runs are "
              "crash-safe: the next call resumes them)", flush=True)
        return STOPPED
    return status


def wait_or_stop(process: subprocess.Popen, timeout: float, grace: float) -> int | None:
    """``process``'s exit status if it ends within ``timeout`` s; else None, once it and its
    process group (the ``--parallel`` workers) are gone: asked to stop (SIGTERM: every run
    stops at its next step, ``latest.pt`` saved), asked again ``grace / 2`` s later (a second
    signal stops it at once and ends its workers), the group killed ``grace / 2`` s after that.
    Meanwhile a SIGINT or SIGTERM to this script is passed on to it (the process has a group
    of its own, which the terminal's Ctrl-C does not reach), so that packing still follows."""
    def forward(signum, frame) -> None:
        process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        for _ in range(2):
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=grace / 2)
                break
        with contextlib.suppress(ProcessLookupError):  # what is left of the group
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: list[str] | None = None) -> int:
    start = time.time()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=540.0,
                        help="seconds for the whole command (the device allows 600)")
    parser.add_argument("--pack-reserve", type=float, default=90.0,
                        help="seconds kept after the runs' stop: half as grace for their last "
                             "checkpoint (and the evaluation), half for packing")
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--recipe", default="recipes/paper.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/experiments/paper")
    parser.add_argument("--only", nargs="+", metavar="METHOD")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="SEED")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="tgd experiment's --set (e.g. compile_mode=reduce-overhead)")
    parser.add_argument("--stage", type=Path, default=ROOT / ".stage")
    parser.add_argument("--fetch-wheels", action="store_true",
                        help="here: download the wheels the device lacks, then stop")
    parser.add_argument("--packages-only", action="store_true",
                        help="there: install the carried wheels, then stop")
    args = parser.parse_args(argv)
    out_dir = Path(os.environ.get("OUT", ROOT / ".stage/out"))
    try:
        if args.fetch_wheels:
            for wheel in fetch_wheels(args.stage):
                print(f"{wheel}: {wheel.stat().st_size / MiB:.1f} MiB")
            return 0
        site = ensure_packages(args.stage)
        if args.packages_only:
            return 0
        data = ensure_data(args.stage)
        if restore_runs(args.stage, args.out):
            print(f"device_paper: restored earlier runs into {args.out}", flush=True)
        status = train(args, data, site, start + args.budget - args.pack_reserve)
        if args.out.exists():
            out_dir.mkdir(parents=True, exist_ok=True)
            manifest = pack_runs(args.out, out_dir, out_budget(out_dir))
            print(f"device_paper: packed {len(manifest['files'])} files in "
                  f"{len(manifest['parts'])} parts into {out_dir}", flush=True)
    except (TGDError, subprocess.CalledProcessError) as exc:
        print(f"device_paper: error: {exc}", file=sys.stderr)
        return 2
    print(f"device_paper: {'finished' if status == 0 else 'stopped (resumable)'} "
          f"after {time.time() - start:.0f} s", flush=True)
    return 0 if status in (0, STOPPED) else status


if __name__ == "__main__":
    sys.exit(main())
