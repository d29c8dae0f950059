"""App latency: the topology explorer's /explore endpoint through a real server.

    .venv/bin/python benchmarks/bench_app.py [--single 10] [--concurrent 20] [--rounds 3]
        [--before-root DIR] [--json out.json] [--write docs/benchmarks.md]

Starts ``python -m app`` as a subprocess on a free local port (its own throw-away state folder)
and measures, with ``gradio_client`` as a browser-less user:

- **start**: seconds from the process start to the first HTTP 200 of ``/`` and to the first
  successful explorer call (numba's disk cache of compiled kernels filled beforehand, as after
  the first ``make app``);
- **single**: ``--single`` explorer calls one after the other (median, p95);
- **concurrent**: ``--concurrent`` users (one client each, connected beforehand) calling at
  once, ``--rounds`` times; p50/p95 over every call of every round, and the server process's
  CPU time per call (/proc: independent of other work on the machine), and gradio's
  per-phase profile of those calls (upload, queue wait, preprocess, handler, postprocess).

Each call analyses the first CIFAR-10 example image in paper mode with the default controls
(upload included: a fresh ``handle_file`` each call, as a browser uploads). ``--before-root``
first measures another checkout (e.g. ``git worktree add /tmp/before <commit>``) with this
venv, in the same run, as the "before" row; ``--json`` saves the raw timings. The load average
before the run is reported: other work on the cores skews every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from report import cpu_name, publish  # noqa: E402

START_TIMEOUT_S = 180.0
#: What the profile showed and what changed (issue #17, item 10), printed under the tables.
WHERE_THE_TIME_WENT = [
    "Where an explorer call's time went before (the topology itself is ~5 ms): building the "
    "two plotly figures (`make_subplots`, validated traces, the `plotly_white` template set "
    "through `update_layout`) ~100–200 ms of handler time on a quiet core, then plotly's "
    "`to_json` in gradio's postprocess ~25 ms, then PIL decoding in gradio's preprocess; all of "
    "it holds the GIL, so 20 calls queue behind each other (queue wait). Now the figures are "
    "plain plotly JSON serialised once with orjson (`app.common.plot_output`, ~1 ms), the "
    "upload reaches the handler undecoded (`preprocess=False`), and the handler's own stages "
    "are shown in its summary. What remains per call is gradio's HTTP work (upload, queue "
    "join, SSE) and the client's.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between order statistics."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def example_image(state: Path) -> str:
    """The first CIFAR-10 test image as a PNG (the app's first example)."""
    from PIL import Image

    from tgd_core.data.datasets import load_cifar10

    images, _ = load_cifar10("test_lossless_1k")
    path = state / "bench_example.png"
    Image.fromarray(images[0]).save(path)
    return str(path)


def wait_for_root(url: str, proc: subprocess.Popen, t0: float) -> float:
    """Seconds from ``t0`` to the first HTTP 200 of ``url``; polls every 50 ms."""
    while time.perf_counter() - t0 < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise SystemExit(f"the app exited with status {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"the app did not answer {url} within {START_TIMEOUT_S:.0f} s")


def explorer_arguments(client) -> list:
    """The /explore arguments after the image: the defaults the API declares."""
    info = client.view_api(print_info=False, return_format="dict")
    params = info["named_endpoints"]["/explore"]["parameters"]
    return [p.get("parameter_default") for p in params[1:]]


def call(client, image: str, args: list) -> float:
    """Seconds one /explore call takes, upload included."""
    from gradio_client import handle_file

    t0 = time.perf_counter()
    client.predict(handle_file(image), *args, api_name="/explore")
    return time.perf_counter() - t0


def first_call(url: str, image: str, t0: float) -> float:
    """Seconds from ``t0`` to the first successful explorer call (retries while loading)."""
    from gradio_client import Client

    while time.perf_counter() - t0 < START_TIMEOUT_S:
        try:
            client = Client(url, verbose=False)
            call(client, image, explorer_arguments(client))
            return time.perf_counter() - t0
        except Exception:  # noqa: BLE001 - still starting: retry
            time.sleep(0.1)
    raise SystemExit(f"no successful explorer call within {START_TIMEOUT_S:.0f} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process (all its threads) has used (Linux /proc): what a
    call costs the server whatever else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(url: str, action: str) -> dict:
    """gradio's request profiler (``GRADIO_PROFILING=1``): ``clear`` it or read its
    ``summary`` (per-phase percentiles of the calls since the last clear)."""
    method = "POST" if action == "clear" else "GET"
    req = urllib.request.Request(f"{url}gradio_api/profiling/{action}", method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def measure(root: Path, single: int, concurrent: int, rounds: int) -> dict:
    """Start the app of checkout ``root`` and measure it (see the module docstring); the
    concurrent calls' server-side phases come from gradio's profiler."""
    from gradio_client import Client

    with tempfile.TemporaryDirectory(prefix="tgd-bench-app-") as tmp:
        state = Path(tmp)
        image = example_image(state)
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        env = {**os.environ, "TGD_STATE_DIR": str(state / "state"),
               "PYTHONPATH": str(root), "GRADIO_ANALYTICS_ENABLED": "False",
               "GRADIO_PROFILING": "1"}
        subprocess.run([sys.executable, "-c", "from app.ui import warm_up; warm_up()"], cwd=root,
                       env=env, check=True, timeout=START_TIMEOUT_S * 5)  # numba's disk cache
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port)], cwd=root,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            to_root = wait_for_root(url, proc, t0)
            cpu_to_root = cpu_seconds(proc.pid)
            to_first = first_call(url, image, t0)
            client = Client(url, verbose=False)
            args = explorer_arguments(client)
            call(client, image, args)  # warm-up
            singles = [call(client, image, args) for _ in range(single)]
            clients = [Client(url, verbose=False) for _ in range(concurrent)]
            together: list[float] = []
            profile(url, "clear")
            cpu0 = cpu_seconds(proc.pid)
            with ThreadPoolExecutor(concurrent) as pool:
                for _ in range(rounds):
                    together += pool.map(lambda c: call(c, image, args), clients)
            cpu_per_call = (cpu_seconds(proc.pid) - cpu0) / len(together)
            phases = profile(url, "summary")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"root": str(root), "to_root_s": to_root, "to_first_call_s": to_first,
            "cpu_to_root_s": cpu_to_root,
            "single": singles, "concurrent": together, "users": concurrent, "phases": phases,
            "server_cpu_per_call_s": cpu_per_call,
            "load": os.getloadavg()[0]}


def row(label: str, run: dict) -> str:
    s, c = run["single"], run["concurrent"]
    return (f"| {label} | {run['to_root_s']:.1f} | {run['cpu_to_root_s']:.1f} | "
            f"{run['to_first_call_s']:.1f} | "
            f"{statistics.median(s) * 1000:,.0f} | {percentile(s, 95) * 1000:,.0f} | "
            f"{percentile(c, 50) * 1000:,.0f} | {percentile(c, 95) * 1000:,.0f} | "
            f"{run['server_cpu_per_call_s'] * 1000:,.0f} |")


def phase_row(label: str, summary: dict) -> str:
    """One row of server-side phase percentiles (from :func:`profile`)."""
    phases = summary.get("phases", {})
    cells = [summary.get("upload", {})] + [phases.get(p, {}) for p in
                                           ("queue_wait", "preprocess", "fn_call",
                                            "postprocess", "total")]
    return f"| {label} | " + " | ".join(f"{c.get('p50', 0):,.0f} / {c.get('p95', 0):,.0f}"
                                         for c in cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--single", type=int, default=10, help="sequential calls")
    ap.add_argument("--concurrent", type=int, default=20, help="users calling at once")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of concurrent calls")
    ap.add_argument("--before-root", help="another checkout measured first, as 'before'")
    ap.add_argument("--json", help="save the raw timings here")
    ap.add_argument("--write", help="write the section into this Markdown file")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    roots = {"before": args.before_root} if args.before_root else {}
    roots["after" if args.before_root else "this checkout"] = str(ROOT)
    runs = {label: measure(Path(root).resolve(), args.single, args.concurrent, args.rounds)
            for label, root in roots.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} before the run; Python {sys.version.split()[0]}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_app.py --single {args.single} "
        f"--concurrent {args.concurrent} --rounds {args.rounds}"
        + (" --before-root <checkout of the old code>" if args.before_root else "") + "`",
        "",
        "One /explore call: the first CIFAR-10 example, paper mode, default controls, upload "
        "included (`gradio_client`). *Start*: from `python -m app` to the first HTTP 200 of `/` "
        "and to the first successful explorer call; *its CPU time*: the CPU seconds the app "
        "process used until `/` answered (about its time on an idle machine). "
        "*Server CPU per call*: the app process's "
        "user + system CPU time over the concurrent calls divided by their number — what a "
        "call costs whatever else runs on the machine.",
        "",
        f"| code | start → `/` (s) | its CPU time (s) | start → first explorer answer (s) | "
        "single p50 (ms) | "
        f"single p95 (ms) | {args.concurrent} concurrent p50 (ms) | "
        f"{args.concurrent} concurrent p95 (ms) | server CPU per call (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [row(label, r) for label, r in runs.items()]
    if "before" in runs:
        b, a = runs["before"]["concurrent"], runs["after"]["concurrent"]
        ratio = percentile(b, 95) / percentile(a, 95)
        lines += ["", f"{args.concurrent}-concurrent p95 **{ratio:.1f}×** lower than before "
                      "(both measured in this run)."]
    lines += ["", f"Server side of the {args.concurrent}-concurrent calls (gradio's profiler, "
                  "`GRADIO_PROFILING=1`), p50 / p95 in ms:", "",
              "| code | upload | queue wait | preprocess | handler | postprocess | total |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [phase_row(label, r["phases"]) for label, r in runs.items()]
    lines += ["", *WHERE_THE_TIME_WENT]
    publish(lines, args.write, "bench_app", "App latency: topology explorer")


if __name__ == "__main__":
    main()
