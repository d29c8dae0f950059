"""The app's layout: one tab per view, each built by its own module; how it is launched."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr

from app import jobs_view, models_view, noise_view, teachers_view, topology_view
from tgd_core.core import paths

INTRO = """# TGD — Topological Guidance-based Knowledge Distillation
Inspect the topology of images (persistence diagrams and images), the teachers, distillation
jobs and the robustness of students. Method: Jeon et al., *Leveraging Topological Guidance for
Improved Knowledge Distillation* (GRaM @ ICML 2024)."""


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
    for f, img in zip(files, images):
        Image.fromarray(img).save(f)
    return [str(f) for f in files]


def warm_up() -> None:
    """Load the compiled kernels and tables now, so the first request is fast."""
    import numpy as np

    from tgd_core.topology.representation import CubicalPIConfig, summarise

    tiny = np.zeros((4, 4, 3), np.uint8)
    summarise(tiny)
    summarise(tiny, CubicalPIConfig())


def build_app() -> gr.Blocks:
    warm_up()
    examples = example_images()
    with gr.Blocks(title="TGD research app") as demo:
        gr.Markdown(INTRO)
        with gr.Tabs():
            with gr.Tab("Topology explorer", id="topology"):
                topology_view.build(examples)
            with gr.Tab("Teachers & similarity maps", id="teachers"):
                teachers_view.build()
            with gr.Tab("Distillation jobs", id="jobs"):
                jobs_view.build()
            with gr.Tab("Noise robustness", id="noise"):
                noise_view.build(examples)
            with gr.Tab("Models", id="models"):
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
    return {"allowed_paths": [], "blocked_paths": blocked_paths(), "max_file_size": "20mb"}
