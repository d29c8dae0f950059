"""The topology explorer: handlers as plain functions, and the running app via gradio_client."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

import app.topology_view as view  # noqa: E402
from app.topology_view import control_values  # noqa: E402
from tests.waiting import SLOW, gradio_client  # noqa: E402


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
    from gradio_client import handle_file
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
        client = gradio_client(url)

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


# --- readability (issue #17, item 4) -------------------------------------------------------

def test_the_pi_window_is_outlined_on_the_diagram_and_its_points_counted(rgb):
    from app.plots import window_counts

    dfig, _, info = explore(rgb, *control_values("paper"))
    (window,) = [t for t in dfig.data if t.name.startswith("PI window")]
    # birth and persistence in [0, 0.306] (persim's last pixel, 0.3 / 50 wide, starts at
    # maxBD = 0.3): death = birth + persistence
    top = 0.3 + 0.3 / 50
    assert list(window.x) == pytest.approx([0, top, top, 0, 0])
    assert list(window.y) == pytest.approx([0, top, 2 * top, top, 0])
    assert "add only Gaussian tails" in window.hovertemplate
    dgm = [("a", "R", np.array([[0.1, 0.2], [0.1, 0.5], [0.4, 0.45], [0.0, np.inf]]))]
    assert window_counts(dgm, (0.0, 0.3, 0.0, 0.3)) == (1, 3)  # (0.1, 0.2) only
    assert "Inside the PI window (dotted outline): **" in view.explore(
        rgb, *control_values("paper"))[2]


def test_pi_panels_name_their_axes_and_share_one_scale_from_zero(rgb):
    _, pfig, _ = explore(rgb, *control_values("paper"))
    layout = pfig.layout
    assert layout.xaxis5.title.text == "birth (intensity, 0–1)"  # bottom row
    assert layout.yaxis.title.text == "persistence"  # left column
    assert layout.coloraxis.cmin == 0
    assert layout.coloraxis.cmax == pytest.approx(max(np.max(t.z) for t in pfig.data), rel=1e-6)
    # one row per channel: row scan left, column scan right
    assert [a.text for a in layout.annotations][:2] == ["row-R H0", "col-R H0"]


def test_an_empty_pi_is_the_lowest_colour_and_says_empty():
    from app.plots import heatmap_grid

    centres = np.linspace(0.0375, 0.2625, 4)
    fig = heatmap_grid(np.stack([np.zeros((4, 4)), np.eye(4) * 0.5]), ["a", "b"], "t",
                       axes=(centres, centres[::-1]))
    assert fig.layout.coloraxis.cmin == 0 and fig.layout.coloraxis.cmax == 0.5
    assert [a.text for a in fig.layout.annotations] == ["a — empty (all zero)", "b"]
    alone = heatmap_grid(np.zeros((1, 4, 4)), ["a"], "t")
    assert (alone.layout.coloraxis.cmin, alone.layout.coloraxis.cmax) == (0, 1)


def test_unticking_every_homology_dimension_names_the_field(rgb):
    with pytest.raises(gr.Error, match="homology: tick at least one of H0, H1"):
        explore(rgb, *control_values("cubical", homology=[]))


def test_the_summary_times_each_stage(rgb):
    import re

    _, _, info = explore(rgb, *control_values("paper"))
    assert re.search(r"Time: decode [\d.]+ ms · topology [\d.]+ ms · figures [\d.]+ ms · "
                     r"JSON [\d.]+ ms\.", info)


def test_switching_mode_is_one_event_and_controls_fire_on_user_input_only(tmp_path, monkeypatch):
    """A mode switch runs one handler (it sets the shared controls and explores once); the
    controls' programmatic updates fire no event (.input/.release, never .change)."""
    from app.ui import build_app

    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path))
    config = build_app().get_config_file()
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"]}
    triggers = [t for d in config["dependencies"] for t in d["targets"]]
    mode_events = [name for target, name in triggers if target == ids["topology-mode"]]
    assert mode_events == ["input"]
    explorer_inputs = next(d["inputs"] for d in config["dependencies"]
                           if d["api_name"] == "explore")
    for target, name in triggers:
        if target in explorer_inputs[1:]:
            assert name in ("input", "release"), name


# --- errors (issue #17, item 3) -------------------------------------------------------------

@pytest.mark.parametrize("content, message", [
    (b"GIF89a? not really", "Image: not a readable image (cannot identify its format); "
                            "upload a PNG or JPEG"),
    (b"", "Image: the file is empty; upload a PNG or JPEG"),
])
def test_an_upload_that_is_not_an_image_gets_one_sentence(tmp_path, content, message):
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    path = tmp_path / "photo.png"
    path.write_bytes(content)
    uploaded = save_file_to_cache(path, get_upload_folder())  # where an upload lands
    with pytest.raises(gr.Error) as caught:
        view.explore({"path": uploaded, "meta": {"_type": "gradio.FileData"}},  # as sent
                     *control_values("paper"))
    assert message in str(caught.value) and "/" not in str(caught.value)


def test_an_upload_is_decoded_from_its_path_with_exif_and_modes(tmp_path):
    from PIL import Image

    from app.common import load_image

    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 20), (0, 255, 0, 0)).save(path)
    rgb, notes = load_image(str(path))
    assert rgb.shape == (20, 40, 3) and "CMYK image converted to RGB" in notes
    big = tmp_path / "big.png"
    Image.new("RGB", (3000, 1500), (9, 9, 9)).save(big)
    rgb, notes = load_image(str(big))
    assert rgb.shape == (512, 1024, 3)
    assert notes[0] == "Downscaled to 1024×512 (original 3000×1500)."


def test_a_large_jpeg_upload_is_decoded_near_the_analysis_size(tmp_path):
    """A phone photo is decoded by libjpeg at 1/2–1/8 scale, then downscaled as any upload;
    the note gives its own size."""
    from PIL import Image

    from app.common import load_image

    path = tmp_path / "photo.jpg"
    Image.new("RGB", (6000, 4000), (30, 120, 200)).save(path, quality=90)
    rgb, notes = load_image(str(path))
    assert rgb.shape == (683, 1024, 3) and np.abs(rgb.astype(int) - (30, 120, 200)).max() <= 2
    assert notes == ["Downscaled to 1024×683 (original 6000×4000)."]


def test_a_network_view_downscales_a_large_upload_instead_of_refusing_it(tmp_path):
    from PIL import Image

    from app.common import network_image

    path = tmp_path / "big.png"
    Image.new("RGB", (2048, 1536), (200, 10, 10)).save(path)
    img, notes = network_image(str(path))
    assert img.shape == (32, 32, 3) and "Downscaled to 1024×768 (original 2048×1536)." in notes


def test_number_fields_leave_bounds_to_the_handler():
    """gradio is given no bounds, so "Epochs: must be ≥ 1" (the handler's) is the message,
    not gradio's "Value -5 is less than minimum value 1."."""
    from app.inputs import NumberField

    field = NumberField("Epochs", integer=True, ge=1, le=10)
    number = field.number(3)
    assert number.minimum is None and number.maximum is None
    assert number.preprocess(-5) == -5
    with pytest.raises(Exception, match="Epochs: must be ≥ 1"):
        field.check(number.preprocess(-5))
    slider = field.slider(3, 1)
    assert slider.preprocess(50) == 50  # unchecked: the handler says "Epochs: must be ≤ 10"
    assert slider.get_block_name() == "slider"  # drawn as a gr.Slider


def test_number_fields_refuse_numbers_beyond_their_types():
    """JSON carries integers of any length: 10**400 for a float field, or a job id past
    SQLite's 64 bits, is a field's one-line error, not an OverflowError."""
    from app.inputs import NumberField
    from tgd_core.core.errors import TGDError

    with pytest.raises(TGDError, match="^Learning rate: must be a finite number$"):
        NumberField("Learning rate", gt=0).check(10**400)
    job = NumberField("Selected job", integer=True, ge=1)
    assert job.check(2**63 - 1) == 2**63 - 1 and job.check(7.0) == 7
    for huge in (2**63, 1e21, 10**400):
        with pytest.raises(TGDError, match=r"^Selected job: must lie within ±\d+ \(64-bit\)$"):
            job.check(huge)


def test_a_slider_passes_any_payload_on_to_its_handler(tmp_path):
    """Only an image's payload is read as an upload: a slider sent ``{"path": ...}`` reaches
    its handler, whose check names the slider, not the image."""
    from app.inputs import NumberField

    field = NumberField("Severity", integer=True, ge=1, le=5)
    payload = {"path": str(tmp_path / "x.png")}
    assert field.slider(3, 1).preprocess(payload) == payload
    with pytest.raises(Exception, match="^Severity: must be a number, not dict$"):
        field.check(payload)


@pytest.mark.parametrize("homology", [5, 1.0, True, "H0"])
def test_a_subset_control_needs_a_list(homology):
    with pytest.raises(gr.Error, match="homology: expected the ticked options as a list"):
        view.explore(np.zeros((8, 8, 3), np.uint8), *control_values("cubical",
                                                                    homology=homology))


@pytest.mark.parametrize("array, message", [
    (np.zeros((8, 8, 2), np.uint8), r"array of shape \(8, 8, 2\) \(an image is H×W, or H×W×C "
                                    r"with 1, 3 or 4 channels\)"),
    ([[1, 2], [3]], "not an image \\(setting an array element with a sequence"),
])
def test_arrays_that_are_not_images_are_refused(array, message):
    from app.common import load_image
    from tgd_core.core.errors import TGDError

    with pytest.raises(TGDError, match=message):
        load_image(array)


def test_an_image_upload_stays_undecoded_after_gradio_rebuilds_it(tmp_path):
    """gradio rebuilds a component from its class and constructor arguments when a handler
    updates it (an example click): the rebuilt one still passes the upload on undecoded."""
    from gradio.data_classes import FileData
    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder

    from app.common import image_upload

    bad = tmp_path / "x.png"
    bad.write_bytes(b"not an image")
    uploaded = save_file_to_cache(bad, get_upload_folder())
    upload = image_upload(label="Image")
    rebuilt = type(upload)(**{**upload.constructor_args, "render": False})
    for component in (upload, rebuilt):
        assert component.preprocess(FileData(path=uploaded)) == uploaded
        assert component.get_block_name() == "image"
        with pytest.raises(gr.Error, match="Image: not an uploaded file"):
            component.preprocess(FileData(path=str(bad)))  # a server path a client names
    import app.common

    assert not Path(app.common.__file__).with_suffix(".pyi").exists()  # no stub written


def test_the_raw_explore_api_reads_only_uploaded_files(tmp_path, monkeypatch):
    """/explore takes its values raw (preprocess=False), yet a path the client names is never
    read: gradio validates the file payload and keeps it to its upload folder first."""
    import json
    import urllib.request

    from gradio.processing_utils import save_file_to_cache
    from gradio.utils import get_upload_folder
    from PIL import Image

    from app.ui import build_app

    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path / "state"))
    demo = build_app().queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        def call(payload) -> str:
            body = json.dumps({"data": [payload, *control_values("paper"), 128]}).encode()
            req = urllib.request.Request(f"{url}gradio_api/call/explore", data=body,
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=SLOW) as resp:
                event = json.loads(resp.read())["event_id"]
            with urllib.request.urlopen(f"{url}gradio_api/call/explore/{event}",
                                        timeout=SLOW) as resp:
                kind, data = resp.read().decode().split("\n", 1)
            return f"{kind}\n{json.loads(data.removeprefix('data: '))}"

        meta = {"_type": "gradio.FileData"}
        for payload in ({"path": str(secret)}, {"path": str(secret), "meta": meta},
                        str(secret)):
            stream = call(payload)
            assert "event: error" in stream and "8×8 image" not in stream, payload
        uploaded = save_file_to_cache(secret, get_upload_folder())  # as an upload lands
        assert "8×8 image" in call({"path": uploaded, "meta": meta})
    finally:
        demo.close()
