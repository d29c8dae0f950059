"""Decoding a photo upload: the app's path (a large JPEG decoded by libjpeg at 1/2–1/8 scale,
then downscaled) against decoding it whole and downscaling, in the same run.

    .venv/bin/python benchmarks/bench_decode.py [--megapixels 12 40] [--repeats 5]
        [--write docs/benchmarks.md]

For each size a synthetic photo (smooth colour fields and noise, saved as a quality-90 JPEG, as
a phone writes) is turned into the explorer's 1024-pixel analysis image both ways: the median
of ``--repeats`` wall-clock times, and the peak resident memory of a fresh process doing one
decode (VmHWM, the peak reset after the imports), and how far the two images
are apart (mean and max |Δ| over the pixels, 0–255).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from report import cpu_name, publish  # noqa: E402

LONGEST = 1024  # the explorer's largest analysis size (app.common.MAX_SIDE)
WAYS = ("whole", "reduced")


def synthetic_photo(path: Path, megapixels: float) -> tuple[int, int]:
    """A 4:3 JPEG of about ``megapixels``: smooth fields upsampled, plus sensor-like noise."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    h = int((megapixels * 1e6 * 3 / 4) ** 0.5)
    w = h * 4 // 3
    fields = Image.fromarray(rng.integers(0, 256, (h // 64, w // 64, 3), dtype=np.uint8))
    photo = np.asarray(fields.resize((w, h), Image.BICUBIC)).astype(np.int16)
    photo += rng.integers(-6, 7, photo.shape, dtype=np.int16)
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(path, quality=90)
    return w, h


def analysis_image(path: Path, way: str):
    """The 1024-pixel analysis image of ``path``: the app's way, or decoded whole first."""
    from app.common import analysis_shape, downscale, load_image
    from tgd_core.data.images import read_image

    if way == "reduced":
        return load_image(str(path), LONGEST)[0]
    pixels, _, (w, h) = read_image(path, max_pixels=10**9)
    return downscale(pixels, analysis_shape(w, h, LONGEST))


def peak_mib(path: Path, way: str) -> float:
    """Peak resident MiB one decode adds, in a fresh process: imports done, the peak reset
    (Linux: ``5 > /proc/self/clear_refs``), then VmHWM less VmRSS before the decode."""
    code = (f"import sys; sys.path[:0] = {[str(ROOT), str(ROOT / 'benchmarks')]}; "
            "import bench_decode as b; from pathlib import Path; import app.common; "
            "kib = lambda key: int(next(l.split()[1] for l in open('/proc/self/status') "
            "if l.startswith(key))); open('/proc/self/clear_refs', 'w').write('5'); "
            f"base = kib('VmRSS'); b.analysis_image(Path({str(path)!r}), {way!r}); "
            "print(kib('VmHWM') - base)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    return int(out.stdout.split()[-1]) / 1024


def measure(path: Path, repeats: int) -> dict:
    """Median seconds, peak MiB and the images' difference, both ways."""
    import numpy as np

    result: dict = {}
    images = {}
    for way in WAYS:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            images[way] = analysis_image(path, way)
            times.append(time.perf_counter() - t0)
        result[way] = {"seconds": statistics.median(times), "peak_mib": peak_mib(path, way)}
    diff = np.abs(images["whole"].astype(int) - images["reduced"].astype(int))
    result["shape"] = list(images["reduced"].shape)
    result["mean_abs_diff"], result["max_abs_diff"] = float(diff.mean()), int(diff.max())
    return result


def report(runs: dict[str, dict], repeats: int) -> list[str]:
    lines = [f"Measured on {cpu_name()} ({os.cpu_count()} cores), `.venv/bin/python "
             f"benchmarks/bench_decode.py`, median of {repeats}; peak memory of one decode in a "
             "fresh process (VmHWM with the peak reset after the imports).", "",
             "| photo (JPEG q90) | whole, then downscaled | the app: decoded at reduced scale "
             "| speed-up | peak MiB whole → reduced | mean / max abs Δ (0–255) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in runs.items():
        whole, reduced = r["whole"], r["reduced"]
        lines.append(f"| {name} → {r['shape'][1]}×{r['shape'][0]} | {whole['seconds']:.2f} s | "
                     f"{reduced['seconds']:.2f} s | {whole['seconds'] / reduced['seconds']:.1f}× "
                     f"| {whole['peak_mib']:.0f} → {reduced['peak_mib']:.0f} | "
                     f"{r['mean_abs_diff']:.2f} / {r['max_abs_diff']} |")
    lines += ["", "Both images are Lanczos-downscaled to the same size; the reduced decode "
              "first averages 2×2 to 8×8 pixel blocks in libjpeg's DCT (PIL's `draft`)."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--megapixels", type=float, nargs="+", default=[12.0, 40.0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", help="save the raw figures here")
    ap.add_argument("--write", help="write the section into this Markdown file")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mp in args.megapixels:
            path = Path(tmp) / f"photo_{mp:g}mp.jpg"
            w, h = synthetic_photo(path, mp)
            runs[f"{w}×{h} ({mp:g} MP)"] = measure(path, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2) + "\n")
    publish(report(runs, args.repeats), args.write, "bench-decode",
            "Photo uploads: decoding a large JPEG")


if __name__ == "__main__":
    main()
