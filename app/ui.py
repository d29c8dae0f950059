"""The app's layout: one tab per view, each built by its own module; how it is launched."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import gradio as gr

from app import jobs_view, models_view, noise_view, teachers_view, topology_view
from tgd_core.core import paths

#: The views' tab labels, by tab id.
TAB_LABELS = {"topology": "Topology explorer", "teachers": "Teachers & similarity maps",
              "jobs": "Distillation jobs", "noise": "Noise robustness", "models": "Models"}
PAPER_URL = "https://arxiv.org/abs/2407.05316"
AUTHORS_CODE_URL = "https://github.com/jeunsom/TGD"
INTRO = f"""## TGD — Topological Guidance-based Knowledge Distillation
**What:** the topology of an image — persistence diagrams and persistence images (PIs) — that TGD
distils, with two teachers, into one small student. **Try:** the first example is analysed
below; click another or upload a photo, move a control, or switch to *cubical* mode.
**Paper:** [Jeon et al., GRaM @ ICML 2024 (arXiv 2407.05316)]({PAPER_URL}) · **Code:**
[the authors' release]({AUTHORS_CODE_URL}) · this engine: `tgd_core/`."""

#: Phone layout (≤ 640 px): every tab stays in the tab bar, which wraps onto a second line.
#: gradio moves the tabs whose measured widths (buttons of a hidden copy of the bar) exceed
#: the bar's width into a "⋯" menu; measured at 1 px they all fit, and the bar wraps.
CSS = """
@media (max-width: 640px) {
  .tab-container.visually-hidden button { width: 1px !important; min-width: 0 !important;
                                          padding: 0 !important; overflow: hidden; }
  .tab-wrapper { height: auto !important; }
  .tab-container[role=tablist] { flex-wrap: wrap !important; height: auto !important;
                                 row-gap: 4px; }
  .tab-container[role=tablist] button { padding: 4px 8px !important; }
}
"""


def example_images(n: int = 12) -> list[str]:
    """PNG files of the first CIFAR-10 test images (written once to the state dir), or []."""
    from PIL import Image

    from tgd_core.core.errors import TGDError
    from tgd_core.data.datasets import load_cifar10

    folder = paths.state_dir() / "examples"
    files = [folder / f"cifar10_test_{i:02d}.png" for i in range(n)]
    if all(f.exists() for f in files):
        return [str(f) for f in files]
    try:
        images, _ = load_cifar10("test_lossless_1k")
    except TGDError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    for f, img in zip(files, images[:n], strict=True):
        Image.fromarray(img).save(f)
    return [str(f) for f in files]


def warm_up() -> None:
    """Load the compiled kernels and tables now, so the first request is fast (the paper-mode
    ones also load when :func:`build_app` computes the explorer's default result)."""
    import numpy as np

    from tgd_core.topology.representation import CubicalPIConfig, summarise

    tiny = np.zeros((4, 4, 3), np.uint8)
    summarise(tiny)
    summarise(tiny, CubicalPIConfig())


def warm_up_in_background() -> threading.Thread:
    """:func:`warm_up` in a daemon thread: call it once the server answers, so it does not
    delay the first page."""
    thread = threading.Thread(target=warm_up, name="tgd-warm-up", daemon=True)
    thread.start()
    return thread


def build_app() -> gr.Blocks:
    """The five views; the explorer's default result is computed here (paper mode)."""
    examples = example_images()
    with gr.Blocks(title="TGD research app") as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab(TAB_LABELS["topology"], id="topology"):
                topology_view.build(examples)
            with gr.Tab(TAB_LABELS["teachers"], id="teachers"):
                teachers_view.build()
            with gr.Tab(TAB_LABELS["jobs"], id="jobs"):
                jobs_view.build()
            with gr.Tab(TAB_LABELS["noise"], id="noise"):
                noise_view.build(examples)
            with gr.Tab(TAB_LABELS["models"], id="models"):
                models_view.build()
    return demo


def blocked_paths() -> list[str]:
    """What ``/gradio_api/file=`` must never serve, whatever ``GRADIO_ALLOWED_PATHS`` says: the
    state folder (job store, runs, PI cache, exports, examples), plus ``GRADIO_BLOCKED_PATHS``.
    Gradio serves only its own cache folder (uploads, copies that handlers return) and allowed
    paths; the app allows none. (Keep ``GRADIO_TEMP_DIR`` outside the state folder.)"""
    extra = [p.strip() for p in os.environ.get("GRADIO_BLOCKED_PATHS", "").split(",") if p.strip()]
    return [str(Path(paths.state_dir()).resolve()), *extra]


def launch_options() -> dict[str, Any]:
    """Keyword arguments of ``demo.launch`` that every way of starting the app shares. Files
    reach the browser only as copies that views return (:func:`app.common.offer_files`);
    example images are copied into gradio's cache when the app is built."""
    return {"allowed_paths": [], "blocked_paths": blocked_paths(), "max_file_size": "20mb",
            "css": CSS}
