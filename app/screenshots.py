"""Drive the app in Debian's Chromium with Playwright; ``python -m app.screenshots [--phone]``
saves a screenshot of each view at 1440×900 to ``docs/screenshots/<view>.png`` (``--phone``:
also ``<view>_phone.png`` at 390×844). The browser tests use the same
helpers (:func:`browser`, :func:`open_tab`, the ``show_*`` actions)."""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tgd_core.core import paths

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: An element each view shows once its tab is open.
VIEW_MARKERS = {"topology": "#topology-run", "teachers": "#teachers-run", "jobs": "#job-submit",
                "noise": "#noise-run", "models": "#models-table"}
DESKTOP, PHONE = (1440, 900), (390, 844)
SCREENSHOT_EXAMPLE = 3  # the explorer's screenshot: this example clicked (0 shows on load)
TIMEOUT_MS = 60_000
#: The download link of a finished job's best.pt in the Jobs view's file list.
BEST_CHECKPOINT_LINK = '#job-files td[aria-label="best.pt"] + td a'


@contextmanager
def browser(width: int = DESKTOP[0], height: int = DESKTOP[1]) -> Iterator[object]:
    """A Playwright page in headless Debian Chromium (never downloads a browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chrome = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = chrome.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            chrome.close()


@contextmanager
def sibling_page(page, width: int, height: int) -> Iterator[object]:
    """Another page of ``page``'s browser at ``width``×``height`` (one Playwright per thread:
    a second :func:`browser` inside the first fails)."""
    other = page.context.browser.new_page(viewport={"width": width, "height": height})
    other.set_default_timeout(TIMEOUT_MS)
    try:
        yield other
    finally:
        other.close()


@contextmanager
def running_app() -> Iterator[str]:
    """The app, launched in this process on a free local port; yields its URL."""
    from app.ui import build_app, launch_options, warm_up_in_background

    demo = build_app().queue(default_concurrency_limit=4)
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True,
                            **launch_options())
    warm_up_in_background()
    try:
        yield url
    finally:
        demo.close()


def open_tab(page, view: str) -> None:
    """Click the view's tab (its label from :data:`app.ui.TAB_LABELS`) and wait for the view."""
    from app.ui import TAB_LABELS

    page.get_by_role("tab", name=TAB_LABELS[view]).click()
    page.locator(VIEW_MARKERS[view]).wait_for()


def topology_info(page) -> str:
    """The explorer's summary text (without gradio's progress overlay)."""
    return page.locator("#topology-info [data-testid=markdown]").inner_text()


def wait_for_new_topology(page, before: str, timeout_ms: float = TIMEOUT_MS) -> str:
    """Wait until the explorer's summary differs from ``before`` and names an image, with
    the diagram drawn (its legend: WebGL points have no SVG traces); returns the summary."""
    page.wait_for_function(
        """(before) => {
             const box = document.querySelector('#topology-info');
             const text = box.querySelector('[data-testid=markdown]').innerText;
             const status = box.querySelector('[data-testid=status-tracker]');
             return text !== before && text.includes(' image — diagrams')
                    && (!status || status.classList.contains('hide')); }""",
        arg=before, timeout=timeout_ms)
    page.locator("#topology-diagrams .legend .traces").first.wait_for(timeout=timeout_ms)
    return topology_info(page)


def upload_topology(page, image: str | Path) -> None:
    """Put ``image`` in the explorer's upload box (the handler runs on the change)."""
    page.locator("#topology-image input[type=file]").set_input_files(str(image))


def show_topology(page, image: str | Path, timeout_ms: float = TIMEOUT_MS) -> str:
    """Upload ``image`` in the explorer; wait for its result (a new summary, the diagram
    drawn); returns the summary."""
    open_tab(page, "topology")
    before = topology_info(page)
    upload_topology(page, image)
    return wait_for_new_topology(page, before, timeout_ms)


def click_example(page, index: int) -> str:
    """Click the explorer's ``index``-th example image; returns the summary of its result."""
    open_tab(page, "topology")
    before = topology_info(page)
    page.locator("#topology-examples button.gallery-item").nth(index).click()
    return wait_for_new_topology(page, before)


def noise_summary(page) -> str:
    return page.locator("#noise-info").inner_text()


def set_severity(page, severity: int) -> None:
    """Set the noise view's severity slider through its number box, as a user typing it."""
    box = page.locator("#noise-severity input[type=number]")
    box.fill(str(severity))
    box.press("Enter")


def show_noise(page, severity: int = 3) -> str:
    """Predict on the default image at ``severity``; returns the summary text once it shows
    that severity. The severity is set before Predict is clicked, so every request in flight
    (the slider's change event, the click) asks for the same severity and none can overwrite
    the summary with an older one."""
    open_tab(page, "noise")
    set_severity(page, severity)
    page.locator("#noise-run").click()
    condition = f"severity {severity} — top-1" if severity else "clean — top-1"
    page.locator("#noise-info").get_by_text(condition).wait_for()
    page.locator("#noise-probs .main-svg").first.wait_for()
    return noise_summary(page)


def show_sweep(page) -> None:
    page.locator("#noise-sweep-run").click()
    page.locator("#noise-sweep-plot .main-svg").first.wait_for(timeout=3 * TIMEOUT_MS)


def show_teachers(page) -> None:
    open_tab(page, "teachers")
    page.locator("#teachers-run").click()
    page.locator("#teachers-maps .main-svg").first.wait_for()


def submit_job(page, train_subset: int, test_subset: int, epochs: int, batch_size: int) -> str:
    """Fill the job form for a scratch ``train`` job and submit it; returns the note text."""
    open_tab(page, "jobs")
    page.locator("#job-method input").fill("scratch")
    page.locator("#job-method input").press("Enter")
    for elem, value in (("job-epochs", epochs), ("job-batch", batch_size),
                        ("job-train-subset", train_subset), ("job-test-subset", test_subset)):
        page.locator(f"#{elem} input").fill(str(value))
    page.locator("#job-submit").click()
    page.get_by_text("queued; worker pid").wait_for()
    return page.locator("#job-note").inner_text()


def dropdown_options(page, elem_id: str) -> list[str]:
    """The choices a dropdown offers now (opens and closes it)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    options = page.locator(f"#{elem_id} li[role=option]")
    options.first.wait_for()
    labels = [options.nth(i).get_attribute("aria-label") for i in range(options.count())]
    box.press("Escape")
    return labels


def wait_for_status(page, job_id: int, status: str, timeout_ms: int = 3 * TIMEOUT_MS) -> None:
    """Wait until the jobs table shows a status matching the regex ``status`` in the row of
    ``job_id``."""
    page.wait_for_function(
        """([id, status]) => [...document.querySelectorAll('#jobs-table tbody tr')].some(
             tr => { const c = [...tr.querySelectorAll("td")]
                                 .map(td => td.textContent.trim());
                     return c[0] === String(id)
                            && c.some(v => new RegExp(`^(${status})$`).test(v)); })""",
        arg=[job_id, status], timeout=timeout_ms)


def stop_workers(state_dir: str | Path) -> None:
    """SIGTERM the job workers of a state dir (their jobs end ``interrupted``)."""
    from tgd_core.jobs import JobStore

    with JobStore(state_dir) as store:
        for pid in store.live_workers():
            os.kill(pid, signal.SIGTERM)


def show_job(page) -> None:
    """Run a tiny 3-epoch scratch job and wait for its curves and its files."""
    note = submit_job(page, train_subset=512, test_subset=256, epochs=3, batch_size=64)
    job_id = int(note.split("Job ", 1)[1].split(" ", 1)[0])
    wait_for_status(page, job_id, "succeeded")
    page.locator("#job-curves .main-svg").first.wait_for()
    page.locator(BEST_CHECKPOINT_LINK).wait_for()


def show_export(page) -> str:
    """Export the selected network (ONNX) from the Models view; returns the report text."""
    open_tab(page, "models")
    page.get_by_text("Export for deployment").click()
    page.locator("#export-run").click()
    page.locator("#export-report").get_by_text("argmax agrees").wait_for(timeout=3 * TIMEOUT_MS)
    return page.locator("#export-report").inner_text()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m app.screenshots", description=__doc__)
    ap.add_argument("--out", default=str(paths.PROJECT_ROOT / "docs" / "screenshots"))
    ap.add_argument("--image", help="image for the topology explorer (default: an example)")
    ap.add_argument("--phone", action="store_true",
                    help=f"also save phone-sized ({PHONE[0]}×{PHONE[1]}) shots of each view")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from app.ui import example_images

    if not (args.image or example_images()):
        ap.error("no example images (CIFAR-10 missing): pass --image")
    state = tempfile.mkdtemp(prefix="tgd-screenshots-")  # jobs go to a throw-away store
    os.environ["TGD_STATE_DIR"] = state
    with running_app() as url, browser() as page:
        page.goto(url)
        if args.image:
            show_topology(page, args.image)
        else:
            click_example(page, SCREENSHOT_EXAMPLE)
        page.screenshot(path=str(out / "topology.png"), full_page=True)
        show_teachers(page)
        page.screenshot(path=str(out / "teachers.png"), full_page=True)
        try:
            show_job(page)
        finally:
            stop_workers(state)
        page.screenshot(path=str(out / "jobs.png"), full_page=True)
        show_noise(page, 4)
        show_sweep(page)
        page.screenshot(path=str(out / "noise.png"), full_page=True)
        show_export(page)
        page.screenshot(path=str(out / "models.png"), full_page=True)
        if args.phone:
            with sibling_page(page, *PHONE) as phone:
                phone.goto(url)
                for view in VIEW_MARKERS:
                    open_tab(phone, view)
                    phone.screenshot(path=str(out / f"{view}_phone.png"))
    print(f"screenshots in {out}")


if __name__ == "__main__":
    main()
