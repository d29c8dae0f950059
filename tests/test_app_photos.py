"""The topology explorer on ordinary photos: analysed at a chosen size, and a diagram figure
small enough for a browser to draw (the most persistent points, at most a fixed number)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

import app.topology_view as view  # noqa: E402
from app.plots import MAX_DIAGRAM_POINTS, diagram_figure, most_persistent  # noqa: E402
from app.topology_view import (  # noqa: E402
    DEFAULT_ANALYSIS_SIZE,
    analysis_image,
    control_values,
)
from tests.test_app_topology import explore, figure, shown_points  # noqa: E402
from tests.waiting import gradio_client  # noqa: E402


def synthetic_photo(width: int = 500, height: int = 375, seed: int = 0) -> np.ndarray:
    """A photo-like uint8 RGB image: smooth gradients per channel plus sensor-like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    base = np.stack([np.sin(3 * x + 1), np.cos(4 * y), np.sin(2 * (x + y))], -1) * 0.35 + 0.5
    return np.clip(base * 255 + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def photo():
    return synthetic_photo()


@pytest.mark.parametrize("mode", ["paper", "cubical"])
def test_a_photo_is_analysed_at_the_default_size_and_named_with_both_sizes(photo, mode):
    dfig, pfig, info = explore(photo, *control_values(mode))
    assert DEFAULT_ANALYSIS_SIZE == 128
    assert "**128×96 image**" in info
    assert "Downscaled to 128×96 (original 500×375)" in info
    assert len(pfig.data) == 6


@pytest.mark.parametrize("size", [DEFAULT_ANALYSIS_SIZE, 1024])
def test_the_diagram_figure_stays_small_whatever_the_analysis_size(photo, size):
    dplot, _, _ = view.explore(photo, *control_values("paper"), size)
    assert len(dplot.plot) < 1_000_000  # the JSON the browser gets
    traces = shown_points(figure(dplot))
    assert all(t.type == "scattergl" for t in traces)
    assert sum(len(t.x) for t in traces) <= MAX_DIAGRAM_POINTS


def test_at_full_size_the_title_and_legend_say_how_many_points_are_shown(photo):
    dfig, _, info = explore(photo, *control_values("paper"), 1024)
    assert "**500×375 image**" in info and "Downscaled" not in info  # nothing to downscale
    title = dfig.layout.title.text
    assert f"showing the {MAX_DIAGRAM_POINTS:,} most persistent of" in title
    total = int(title.split(" of ")[-1].split(" points")[0].replace(",", ""))
    assert total > 100_000  # every pixel row/column of a photo has many H0 bars
    assert all(" of " in t.name for t in shown_points(dfig))


def test_the_shown_points_are_the_most_persistent():
    rng = np.random.default_rng(3)
    diagrams = []
    for label in ("R H0", "G H0", "B H1"):
        birth = rng.random(4000)
        dgm = np.stack([birth, birth + rng.exponential(0.05, 4000)], axis=1)
        diagrams.append((label, label[0], dgm))
    diagrams[0][2][0, 1] = np.inf  # an essential point is always shown
    fig = diagram_figure(diagrams, "t", max_points=1000)
    shown = most_persistent([d for _, _, d in diagrams], 1000)
    assert sum(map(len, shown)) == 1000 == sum(len(t.x) for t in shown_points(fig))
    assert 0 in shown[0]
    pers = [np.abs(d[:, 1] - d[:, 0]) for _, _, d in diagrams]
    kept = np.concatenate([p[i] for p, i in zip(pers, shown, strict=True)])
    hidden = np.concatenate([np.delete(p, i) for p, i in zip(pers, shown, strict=True)])
    assert kept.min() >= hidden.max()
    for trace, (_, _, dgm), idx in zip(shown_points(fig), diagrams, shown, strict=True):
        np.testing.assert_allclose(np.sort(trace.x), np.sort(dgm[idx, 0]))


def test_few_points_are_all_shown_without_a_count_in_the_title():
    dgm = np.array([[0.0, 0.5], [0.1, 0.2]])
    fig = diagram_figure([("grey H0", "grey", dgm)], "title")
    assert fig.layout.title.text == "title"
    assert shown_points(fig)[0].name == "grey H0 (2)"


def test_a_large_photo_is_downscaled_not_refused():
    big = synthetic_photo(2000, 1500, seed=1)
    _, _, info = explore(big, *control_values("cubical", channels="grey"))
    assert "**128×96 image**" in info and "original 2000×1500" in info
    rgb, notes = analysis_image(big, 1024)
    assert rgb.shape == (768, 1024, 3) and rgb.dtype == np.uint8
    assert "Downscaled to 1024×768 (original 2000×1500)" in notes[0]


def test_downscaling_keeps_the_aspect_grey_floats_and_thin_images():
    grey = np.linspace(0, 1, 300 * 200).reshape(200, 300)  # float in [0, 1]
    rgb, notes = analysis_image(grey, 30)
    assert rgb.shape == (20, 30, 3) and rgb.max() > 200  # still read as 0–1, not 0–255
    assert any("grey image" in n for n in notes) and any("float pixels" in n for n in notes)
    rgb, _ = analysis_image(np.zeros((3, 2000), np.uint8), 128)
    assert rgb.shape == (2, 128, 3)  # the short side never drops below 2 pixels


def test_an_absurd_upload_is_refused_with_one_line():
    absurd = np.broadcast_to(np.uint8(0), (20_000, 20_000, 3))  # 400 megapixels, no memory
    with pytest.raises(gr.Error) as caught:
        explore(absurd, *control_values("paper"))
    message = str(caught.value)
    assert "Image: 20000×20000 pixels is too large" in message
    assert "megapixels" in message and "\n" not in message


@pytest.mark.parametrize("size, message", [
    (8, "must be ≥ 16"), (4096, "must be ≤ 1024"), (100.5, "must be a whole number"),
    (None, "a number is required"), ("big", "must be a number"),
])
def test_analysis_sizes_outside_the_control_are_refused_naming_it(photo, size, message):
    with pytest.raises(gr.Error, match=r"Analysis size \(longest side, px\): " + message):
        explore(photo, *control_values("paper"), size)


def test_the_analysis_size_is_optional_and_the_argument_count_checked(photo):
    _, _, info = explore(photo, *control_values("paper"))
    assert "Downscaled to 128×96" in info
    with pytest.raises(gr.Error, match="expected the mode, 10 control values and"):
        explore(photo, *control_values("paper")[:-1])


def test_through_the_http_api(tmp_path, monkeypatch):
    """A 2000×1500 PNG through /explore is downscaled; an analysis size outside the slider is
    refused by the handler, naming the field (not gradio's "Value ... greater than maximum")."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    from app.ui import build_app

    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path))
    demo = build_app().queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        path = tmp_path / "photo.png"
        Image.fromarray(synthetic_photo(2000, 1500)).save(path)
        client = gradio_client(url)
        dfig, _, info = client.predict(handle_file(str(path)), *control_values("paper"),
                                       api_name="/explore")
        assert "Downscaled to 128×96 (original 2000×1500)" in info
        assert len(json.dumps(dfig)) < 1_000_000
        with pytest.raises(AppError, match=r"Analysis size \(longest side, px\): must be ≤ 1024"):
            client.predict(handle_file(str(path)), *control_values("paper"), 5000,
                           api_name="/explore")
    finally:
        demo.close()
