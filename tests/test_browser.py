"""Real-browser tests: the app in Debian's Chromium driven by Playwright (never downloads a
browser). Skipped when /usr/bin/chromium or playwright is missing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
pytest.importorskip("gradio")
pytest.importorskip("playwright.sync_api")

from playwright.sync_api import expect  # noqa: E402

from app import screenshots as drive  # noqa: E402
from tests.zoo_helpers import use_zoo  # noqa: E402
from tgd_core.jobs import JobStore  # noqa: E402
from tgd_core.nets import model_zoo  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(drive.CHROMIUM).exists(), reason=f"{drive.CHROMIUM} missing"),
]


@pytest.fixture(scope="module")
def state(tmp_path_factory):
    """A fresh state dir (job store) and a zoo: the authors' students, or a tiny one."""
    tmp = tmp_path_factory.mktemp("browser")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TGD_STATE_DIR", str(tmp / "state"))
        if not model_zoo.discover():
            use_zoo(mp, tmp)
        yield tmp / "state"
        drive.stop_workers(tmp / "state")


@pytest.fixture(scope="module")
def app_url(state):
    with drive.running_app() as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    """A desktop-sized (1440×900) page on the app."""
    with drive.browser() as page:
        page.goto(app_url)
        yield page


def test_the_landing_shows_a_result_and_compute_above_the_fold(page):
    drive.open_tab(page, "topology")
    page.locator("#topology-diagrams .legend .traces").nth(5).wait_for()  # six diagrams
    assert "32×32 image — diagrams" in drive.topology_info(page)
    assert page.locator("#topology-pis .main-svg").count() >= 1
    box = page.locator("#topology-run").bounding_box()
    assert box["y"] + box["height"] <= drive.DESKTOP[1]  # Compute within view at 1440×900
    assert page.get_by_role("link", name=re.compile("arXiv 2407.05316")).count() == 1


def test_upload_renders_the_persistence_diagrams(page, tmp_path):
    from PIL import Image

    path = tmp_path / "upload.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), np.uint8)).save(path)
    info = drive.show_topology(page, path)
    page.locator("#topology-diagrams .legend .traces").nth(5).wait_for()  # six diagrams
    assert page.locator("#topology-diagrams canvas").count() >= 1  # the WebGL points
    assert "40×30 image" in info and "Time: decode" in info


def test_a_500x375_photo_renders_its_diagram(page, tmp_path):
    from PIL import Image

    from tests.test_app_photos import synthetic_photo

    path = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(500, 375, seed=2)).save(path)
    info = drive.show_topology(page, path)  # bounded against hangs only: no speed guess
    assert "128×96 image" in info and "original 500×375" in info


def test_clicking_an_example_shows_its_result(page):
    info = drive.click_example(page, 5)
    assert "32×32 image — diagrams" in info


@pytest.mark.parametrize("content", [b"this is not a PNG", b""], ids=["text", "empty"])
def test_a_bad_upload_shows_a_sentence_naming_the_field_and_the_fix(page, tmp_path, content):
    path = tmp_path / "holiday.png"
    path.write_bytes(content)
    drive.open_tab(page, "topology")
    drive.upload_topology(page, path)
    toast = page.get_by_text(re.compile(r"Image: (not a readable image|the file is empty)")).first
    toast.wait_for()  # the page's bound against hangs (screenshots.TIMEOUT_MS)
    text = toast.inner_text()
    assert "upload a PNG or JPEG" in text
    assert "UnidentifiedImageError" not in text and "preprocess" not in text
    assert str(tmp_path) not in text


def test_on_a_phone_every_view_is_reachable(page, app_url):
    with drive.sibling_page(page, *drive.PHONE) as phone:
        phone.goto(app_url)
        tabs = phone.get_by_role("tab")
        tabs.first.wait_for()
        assert tabs.count() == len(drive.VIEW_MARKERS)  # none hidden in a "⋯" menu
        for view in drive.VIEW_MARKERS:
            drive.open_tab(phone, view)
            assert phone.locator(drive.VIEW_MARKERS[view]).is_visible()
        drive.open_tab(phone, "topology")
        panel = phone.locator("#topology-pis .main-svg").first.bounding_box()
        assert panel["width"] >= 300  # the PI grid fills the phone's width, not ~60 px


def test_moving_the_noise_slider_changes_the_predictions(page):
    before = drive.show_noise(page, 3)
    assert "severity 3 — top-1" in before
    after = drive.show_noise(page, 0)
    assert "clean — top-1" in after
    percentages = lambda text: re.findall(r"\((\d+\.\d)%\)", text)  # noqa: E731
    assert percentages(before) and percentages(before) != percentages(after)


def test_a_tiny_job_reaches_succeeded(page, state):
    note = drive.submit_job(page, train_subset=64, test_subset=32, epochs=1, batch_size=32)
    job_id = int(re.search(r"Job (\d+)", note).group(1))
    drive.wait_for_status(page, job_id, "queued|running|succeeded")
    try:
        drive.wait_for_status(page, job_id, "succeeded")
    except Exception:
        with JobStore(state) as store:
            job = store.get(job_id)
            log = job.log_path.read_text()[-2000:] if job.log_path.exists() else ""
        pytest.fail(f"job {job_id} is {job.status}: {job.error}\n{log}")
    page.locator("#job-curves .main-svg").first.wait_for()
    expect(page.locator("#job-cancel")).to_be_disabled(timeout=drive.TIMEOUT_MS)  # finished:
    expect(page.locator("#job-resume")).to_be_disabled(timeout=drive.TIMEOUT_MS)  # nothing to do
    link = page.locator(drive.BEST_CHECKPOINT_LINK)
    link.wait_for()
    assert page.request.get(link.get_attribute("href")).body()[:2] == b"PK"  # a torch zip
    assert f"job {job_id} best.pt" in drive.dropdown_options(page, "job-t1")


def test_export_from_the_models_view_offers_a_validated_onnx_file(page):
    report = drive.show_export(page)
    assert re.search(r"max \|Δ logit\| \d\.\d\de-\d\d vs PyTorch", report), report
    assert page.locator("#export-files").get_by_text(".onnx").first.is_visible()
