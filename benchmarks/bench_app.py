"""App latency: the topology explorer's /explore endpoint through a real server.

    .venv/bin/python benchmarks/bench_app.py [--single 10] [--concurrent 20] [--rounds 3]
        [--before-root DIR] [--json out.json] [--write docs/benchmarks.md]

Starts ``python -m app`` as a subprocess on a free local port (its own throw-away state folder)
and measures:

- **start**: seconds from the process start to the first HTTP 200 of ``/`` and to the first
  successful explorer call (numba's disk cache of compiled kernels filled beforehand, as after
  the first ``make app``);
- **single**: ``--single`` explorer calls one after the other with ``gradio_client``;
- **browser-like visitors** (the latency target): ``--concurrent`` visitors
  (:class:`BrowserUser`: one keep-alive connection and one gradio session each, as a browser
  with the page open) calling at once — their first calls, then ``--rounds`` more rounds;
- **gradio_client users**: ``--concurrent`` ``gradio_client`` clients in threads, ``--rounds``
  rounds (the client library opens new connections per request: its own CPU dominates here);
- for both concurrent kinds: p50/p95 over every call, the server process's CPU time per call
  (/proc: independent of other work on the machine), the benchmark process's (the clients'),
  and gradio's per-phase profile (upload, queue wait, preprocess, handler, postprocess).

Each call analyses the first CIFAR-10 example image in paper mode with the default controls
(upload included in every call, as a browser uploads). ``--before-root``
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
    "Where the 20-concurrent p95 went after that: to the benchmark's own clients. "
    "`gradio_client` creates a new HTTP client (connection pool, TLS context) for every upload, "
    "queue join and event stream: its CPU per call is several times the server's, and its 20 "
    "threads share the app's 2 cores (py-spy on the server showed it mostly idle). A browser "
    "keeps one connection and one session per open page, which the browser-like visitors "
    "reproduce; a visitor's first call also pays gradio's creation of its session (the "
    "configuration of every block of the app), hence the separate first-call columns.",
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


def explore_fn_index(url: str) -> int:
    """The dependency id of the /explore endpoint, from the app's ``/config``."""
    with urllib.request.urlopen(f"{url}config", timeout=30) as resp:
        config = json.loads(resp.read())
    return next(d["id"] for d in config["dependencies"] if d.get("api_name") == "explore")


class BrowserUser:
    """One visitor with the page open, as a browser is: one keep-alive HTTP connection and one
    gradio session (the page's ``session_hash``) for all its calls."""

    def __init__(self, url: str) -> None:
        import uuid

        import httpx

        self.http = httpx.AsyncClient(base_url=url, timeout=120)
        self.session = uuid.uuid4().hex

    async def explore(self, image: bytes, fn_index: int, args: list) -> float:
        """Seconds one /explore call takes as the browser makes it: upload the file, join the
        queue, read the session's event stream to the result."""
        t0 = time.perf_counter()
        resp = await self.http.post("gradio_api/upload",
                                    files={"files": ("example.png", image, "image/png")})
        resp.raise_for_status()
        upload = {"path": resp.json()[0], "orig_name": "example.png",
                  "meta": {"_type": "gradio.FileData"}}
        resp = await self.http.post("gradio_api/queue/join", json={
            "data": [upload, *args], "fn_index": fn_index, "session_hash": self.session,
            "event_data": None, "trigger_id": None})
        resp.raise_for_status()
        async with self.http.stream("GET", "gradio_api/queue/data",
                                    params={"session_hash": self.session}) as stream:
            async for line in stream.aiter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_completed":
                    if not message.get("success"):
                        raise RuntimeError(f"/explore failed: {message.get('output')}")
                    return time.perf_counter() - t0
        raise RuntimeError("the event stream ended before the result")


def browser_rounds(url: str, image_path: str, args: list, users: int, rounds: int) -> dict:
    """``users`` browser-like visitors (:class:`BrowserUser`, all on one asyncio loop in this
    process) calling /explore at once: first each visitor's first call (its gradio session is
    created then), then ``rounds`` more rounds. Returns the seconds of the first calls and of
    the later ones, and this process's CPU seconds per call."""
    import asyncio

    image, fn_index = Path(image_path).read_bytes(), explore_fn_index(url)

    async def run() -> tuple[list[float], list[float]]:
        visitors = [BrowserUser(url) for _ in range(users)]
        try:
            async def round_() -> list[float]:
                return list(await asyncio.gather(*(v.explore(image, fn_index, args)
                                                   for v in visitors)))
            first, later = await round_(), []
            for _ in range(rounds):
                later += await round_()
            return first, later
        finally:
            await asyncio.gather(*(v.http.aclose() for v in visitors))

    cpu0 = time.process_time()
    first, later = asyncio.run(run())
    return {"first": first, "later": later,
            "client_cpu_per_call_s": (time.process_time() - cpu0) / (users * (rounds + 1))}


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

            def gradio_client_rounds() -> list[float]:
                with ThreadPoolExecutor(concurrent) as pool:
                    return [t for _ in range(rounds)
                            for t in pool.map(lambda c: call(c, image, args), clients)]

            runs = {"gradio_client": server_side(url, proc.pid, gradio_client_rounds),
                    "browser": server_side(url, proc.pid, lambda: browser_rounds(
                        url, image, args, concurrent, rounds))}
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return {"root": str(root), "to_root_s": to_root, "to_first_call_s": to_first,
            "cpu_to_root_s": cpu_to_root, "single": singles, "users": concurrent, **runs,
            "load": os.getloadavg()[0]}


def server_side(url: str, pid: int, calls) -> dict:
    """Run ``calls()`` (the seconds of each call it makes, or a dict of them) and add the app
    process's CPU seconds per call, this process's (the clients'), and gradio's profile."""
    profile(url, "clear")
    server0, client0 = cpu_seconds(pid), time.process_time()
    result = calls()
    seconds = result if isinstance(result, list) else result["first"] + result["later"]
    timings = result if isinstance(result, dict) else {"later": result}
    return {**timings, "server_cpu_per_call_s": (cpu_seconds(pid) - server0) / len(seconds),
            "client_cpu_per_call_s": (time.process_time() - client0) / len(seconds),
            "phases": profile(url, "summary")}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def row(label: str, run: dict) -> str:
    """Start and single-call figures, then the ``gradio_client`` users'."""
    s, c = run["single"], run["gradio_client"]
    return (f"| {label} | {run['to_root_s']:.1f} | {run['cpu_to_root_s']:.1f} | "
            f"{run['to_first_call_s']:.1f} | {ms(statistics.median(s))} | "
            f"{ms(percentile(s, 95))} | {ms(percentile(c['later'], 50))} | "
            f"{ms(percentile(c['later'], 95))} | {ms(c['server_cpu_per_call_s'])} | "
            f"{ms(c['client_cpu_per_call_s'])} |")


def browser_row(label: str, run: dict) -> str:
    """The browser-like visitors' first calls and later rounds."""
    b = run["browser"]
    return (f"| {label} | {ms(percentile(b['first'], 50))} | {ms(percentile(b['first'], 95))} "
            f"| {ms(percentile(b['later'], 50))} | {ms(percentile(b['later'], 95))} | "
            f"{ms(b['server_cpu_per_call_s'])} | {ms(b['client_cpu_per_call_s'])} |")


def phase_row(label: str, summary: dict) -> str:
    """One row of server-side phase percentiles (from :func:`profile`)."""
    phases = summary.get("phases", {})
    cells = [summary.get("upload", {})] + [phases.get(p, {}) for p in
                                           ("queue_wait", "preprocess", "fn_call",
                                            "postprocess", "total")]
    return f"| {label} | " + " | ".join(f"{c.get('p50', 0):,.0f} / {c.get('p95', 0):,.0f}"
                                         for c in cells) + " |"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--single", type=int, default=10, help="sequential calls")
    ap.add_argument("--concurrent", type=int, default=20, help="users calling at once")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of concurrent calls")
    ap.add_argument("--before-root", help="another checkout measured first, as 'before'")
    ap.add_argument("--json", help="save the raw timings here")
    ap.add_argument("--write", help="write the section into this Markdown file")
    return ap.parse_args()


def report_lines(args: argparse.Namespace, load: float, runs: dict[str, dict]) -> list[str]:
    """The markdown section for ``runs`` (label → :func:`measure`'s timings): set-up, command,
    the browser-visitor and gradio_client tables, the before/after ratio when there is a
    'before', and the server-side phases."""
    return [*setup_lines(args, load), "", *browser_table(args, runs), "",
            *client_table(args, runs), *ratio_lines(args, runs), "", *phase_table(args, runs),
            "", *WHERE_THE_TIME_WENT]


def setup_lines(args: argparse.Namespace, load: float) -> list[str]:
    """The machine, the command and what one call and each figure are."""
    return [
        f"Measured {time.strftime('%Y-%m-%d')} on {cpu_name()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} before the run; Python {sys.version.split()[0]}.",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_app.py --single {args.single} "
        f"--concurrent {args.concurrent} --rounds {args.rounds}"
        + (" --before-root <checkout of the old code>" if args.before_root else "") + "`",
        "",
        "One /explore call: the first CIFAR-10 example, paper mode, default controls, upload "
        "included. *Start*: from `python -m app` to the first HTTP 200 of `/` "
        "and to the first successful explorer call; *its CPU time*: the CPU seconds the app "
        "process used until `/` answered (about its time on an idle machine). *Server CPU per "
        "call*: the app process's user + system CPU time over the concurrent calls divided by "
        "their number — what a call costs whatever else runs on the machine; *client CPU per "
        "call*: the same for the benchmark process, whose users share the app's 2 cores."]


def browser_table(args: argparse.Namespace, runs: dict[str, dict]) -> list[str]:
    """The browser-like visitors' first calls and later rounds, one row per code."""
    return [
        f"**{args.concurrent} browser-like visitors** (`BrowserUser`: what a browser with the page "
        "open does — one keep-alive connection and one gradio session per visitor; upload, "
        "queue join, event stream; all on one asyncio loop). *First call*: every visitor's "
        "first call at once (gradio creates each visitor's session then); *later*: "
        f"{args.rounds} more rounds of all {args.concurrent} at once.",
        "",
        "| code | first call p50 (ms) | first call p95 (ms) | later p50 (ms) | "
        "later p95 (ms) | server CPU per call (ms) | client CPU per call (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *[browser_row(label, r) for label, r in runs.items()]]


def client_table(args: argparse.Namespace, runs: dict[str, dict]) -> list[str]:
    """Start, single calls and the ``gradio_client`` users, one row per code."""
    users = args.concurrent
    return [
        f"**Start, single calls, and {users} `gradio_client` users** (one "
        f"`gradio_client.Client` per user in a thread, connected beforehand, {args.rounds} "
        "rounds; `gradio_client` opens new HTTP connections for every upload, queue join and "
        "event stream, so its own CPU per call is several times the server's and, on these 2 "
        "cores, dominates its latency):",
        "",
        f"| code | start → `/` (s) | its CPU time (s) | start → first explorer answer (s) | "
        f"single p50 (ms) | single p95 (ms) | {users} users p50 (ms) | {users} users p95 (ms) | "
        "server CPU per call (ms) | client CPU per call (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *[row(label, r) for label, r in runs.items()]]


def ratio_lines(args: argparse.Namespace, runs: dict[str, dict]) -> list[str]:
    """How many times lower the later rounds' p95 is after than before (none without a
    'before')."""
    if "before" not in runs:
        return []
    ratios = {kind: percentile(runs["before"][kind]["later"], 95)
              / percentile(runs["after"][kind]["later"], 95)
              for kind in ("browser", "gradio_client")}
    return ["", f"{args.concurrent}-concurrent p95 **{ratios['browser']:.1f}×** lower than "
                f"before with browser-like visitors, {ratios['gradio_client']:.1f}× with "
                "`gradio_client` users (both measured in this run)."]


def phase_table(args: argparse.Namespace, runs: dict[str, dict]) -> list[str]:
    """The server-side phases of the browser-like visitors' calls, one row per code."""
    return [f"Server side of the {args.concurrent} browser-like visitors' calls (gradio's "
            "profiler, `GRADIO_PROFILING=1`), p50 / p95 in ms:", "",
            "| code | upload | queue wait | preprocess | handler | postprocess | total |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *[phase_row(label, r["browser"]["phases"]) for label, r in runs.items()]]


def main() -> None:
    args = parse_args()
    load = os.getloadavg()[0]
    roots = {"before": args.before_root} if args.before_root else {}
    roots["after" if args.before_root else "this checkout"] = str(ROOT)
    runs = {label: measure(Path(root).resolve(), args.single, args.concurrent, args.rounds)
            for label, root in roots.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1))
    publish(report_lines(args, load, runs), args.write, "bench_app",
            "App latency: topology explorer")


if __name__ == "__main__":
    main()
