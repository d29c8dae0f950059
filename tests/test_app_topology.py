"""The topology explorer: handlers as plain functions, and the running app via gradio_client."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

import app.topology_view as view  # noqa: E402
from app.topology_view import control_values  # noqa: E402


def figure(plot):
    """A /explore plot payload (gradio's PlotData: plotly JSON) as a validated plotly figure."""
    import json

    import plotly.graph_objects as go

    return go.Figure(json.loads(plot.plot))


def explore(image, *values):
    """The explorer handler with its plots as plotly figures (validated: the JSON the browser
    gets is a well-formed plotly figure)."""
    dplot, pplot, info = view.explore(image, *values)
    return figure(dplot), figure(pplot), info


def shown_points(fig) -> list:
    """The diagram traces of a figure (not the diagonal nor the PI window's outline)."""
    return [t for t in fig.data if t.name != "diagonal" and not t.name.startswith("PI window")]


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def test_paper_mode_figures(rgb):
    dfig, pfig, info = explore(rgb, *control_values("paper"))
    assert len(pfig.data) == 6 and np.shape(pfig.data[0].z) == (50, 50)
    names = [t.name for t in shown_points(dfig)]
    assert len(names) == 6 and names[0].startswith("row-R H0")
    assert "32×32 image" in info and "ms" in info


def test_cubical_mode_figures(rgb):
    dfig, pfig, info = explore(rgb, *control_values("cubical", resolution=20,
                                                   homology=["H0", "H1"], channels="grey"))
    assert len(pfig.data) == 2 and np.shape(pfig.data[0].z) == (20, 20)
    assert {t.name.split(" (")[0] for t in shown_points(dfig)} == \
        {"grey H0", "grey H1"}


def test_grey_and_rgba_uploads_are_converted_with_a_note(rgb):
    _, _, info = explore(rgb[..., 0], *control_values("paper"))
    assert "grey image" in info
    rgba = np.concatenate([rgb, np.full((32, 32, 1), 255, np.uint8)], axis=-1)
    _, _, info = explore(rgba, *control_values("paper"))
    assert "alpha channel is ignored" in info


@pytest.mark.parametrize("image, message", [
    (None, "upload an image"),
    (np.zeros((1, 40, 3), np.uint8), "too small"),
    (np.broadcast_to(np.uint8(0), (8000, 5001)), "Image: 5001×8000 pixels is too large"),
])
def test_bad_uploads_raise_gradio_errors(image, message):
    with pytest.raises(gr.Error, match=message):
        explore(image, *control_values("paper"))


@pytest.mark.parametrize("controls, message", [
    ({"mode": "torus"}, "Mode: not one of the offered choices"),
    ({"resolution": 10**6}, "PI resolution: must be ≤ 100"),
    ({"resolution": float("nan")}, "PI resolution: must be a finite number"),
    ({"resolution": 20.5}, "PI resolution: must be a whole number"),
    ({"spread": None}, "σ \\(spread\\): a number is required"),
    ({"mode": "cubical", "homology": ["H2"]}, "homology: not one of the offered choices"),
    ({"mode": "cubical", "filtration": "/etc/passwd"}, "filtration: not one of the offered"),
    ({"mode": "cubical", "sigma": -1}, "σ: must be ≥ 0.005"),
])
def test_controls_outside_what_the_view_offers_are_refused(rgb, controls, message):
    with pytest.raises(gr.Error, match=message):
        explore(rgb, *control_values(**controls))


def test_the_analysis_size_comes_last_in_the_api_order(rgb):
    _, _, info = explore(rgb, *control_values("paper"), 16)
    assert "Downscaled to 16×16 (original 32×32)" in info
    with pytest.raises(gr.Error, match=r"Analysis size \(longest side, px\): must be ≤ 1024"):
        explore(rgb, *control_values("paper"), 4096)


def test_twenty_concurrent_requests_through_gradio_client(tmp_path, monkeypatch):
    from gradio_client import Client, handle_file
    from PIL import Image

    from app.ui import build_app

    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path))
    demo = build_app().queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        rng = np.random.default_rng(1)
        files = []
        for i in range(4):
            path = tmp_path / f"img{i}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            files.append(str(path))
        client = Client(url, verbose=False)

        def call(i):
            mode = "paper" if i % 2 == 0 else "cubical"
            return client.predict(handle_file(files[i % 4]), mode, 32, 0.01, 0.3, 0.02,
                                  ["H0", "H1"], "sublevel", "rgb", "top", 0.02, 1.0,
                                  128, api_name="/explore")

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(call, range(20)))
        assert len(results) == 20
        assert all("32×32 image" in r[2] for r in results)
    finally:
        demo.close()
