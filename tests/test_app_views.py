"""The app's views 2-5: handlers as plain functions on a tiny zoo, and the running app through
gradio_client."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

from gradio.utils import get_upload_folder  # noqa: E402

from app import jobs_view, models_view, noise_view, teachers_view  # noqa: E402
from tests.waiting import gradio_client  # noqa: E402
from tests.zoo_helpers import use_zoo  # noqa: E402
from tgd_core.jobs import JobKind, registry  # noqa: E402

NO_PROGRESS = lambda *a, **k: None  # noqa: E731
RNG_IMAGE = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)


def table_rows(table) -> list[list]:
    """The rows of a jobs table as the handlers return it (a pandas Styler)."""
    return table.data.values.tolist()


@pytest.fixture
def zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path / "state"))
    return use_zoo(monkeypatch, tmp_path)


@pytest.fixture
def kinds(monkeypatch):
    """``train``/``distill`` validated with TrainConfig (their runners are not needed here), and
    no worker process."""
    for kind in ("train", "distill"):
        if kind not in registry.REGISTRY:
            monkeypatch.setitem(registry.REGISTRY, kind, JobKind(
                "tgd_core.training:TrainConfig", "tgd_core.training:run_train_job"))
    monkeypatch.setattr(jobs_view, "start_worker", lambda: 4242)


# -- noise robustness ----------------------------------------------------------------------------

def test_noise_predict_shows_every_network_and_changes_with_severity(zoo):
    clean, noisy, fig, info = noise_view.predict(RNG_IMAGE, "gaussian_noise", 0)
    assert clean.shape == (32 * noise_view.ZOOM, 32 * noise_view.ZOOM, 3)
    assert (clean == noisy).all()
    assert [t.name for t in fig.data] == ["t1_raw", "plain_pi", "student_tgd"]
    assert "48×40 image resized to 32×32" in info and "**clean**" in info
    _, noisy5, fig5, info5 = noise_view.predict(RNG_IMAGE, "gaussian_noise", 5)
    assert (noisy5 != clean).any() and "severity 5" in info5
    assert not np.allclose(fig.data[0].y, fig5.data[0].y)


@pytest.mark.parametrize("image, message", [(None, "upload an image"),
                                            (np.zeros((1, 9, 3), np.uint8), "too small")])
def test_noise_predict_bad_uploads(zoo, image, message):
    with pytest.raises(gr.Error, match=message):
        noise_view.predict(image, "contrast", 2)


def test_noise_sweep_on_a_tiny_subset(zoo, cifar_test_images):
    acc, rel, rows = noise_view.sweep("contrast", 10, 0, 3, progress=NO_PROGRESS)
    assert len(rows) == 6 * 3 and rows[0][:2] == ["t1_raw", 0]
    assert [t.name for t in acc.data] == ["t1_raw", "plain_pi", "student_tgd"]
    assert [a.text for a in rel.layout.annotations] == ["clean", "contrast 3"]


def test_noise_without_any_network(tmp_path, monkeypatch):
    monkeypatch.setenv("TGD_CHECKPOINT_DIR", str(tmp_path / "none"))
    monkeypatch.setenv("TGD_OFFICIAL_DIR", str(tmp_path / "none"))
    with pytest.raises(gr.Error, match="no checkpoints found"):
        noise_view.predict(RNG_IMAGE, "contrast", 1)


# -- teachers & similarity maps ------------------------------------------------------------------

def test_similarity_maps_of_uploads(zoo, tmp_path):
    from PIL import Image

    files = []
    for i in range(3):
        path = tmp_path / f"u{i}.png"
        Image.fromarray(np.roll(RNG_IMAGE, i, axis=0)).save(path)
        files.append(str(path))
    assert teachers_view.choices("teacher1") == ["t1_raw"]
    fig, info, rows = teachers_view.maps(files, 0, 0, 0.5, "t1_raw", "plain_pi", "student_tgd",
                                         progress=NO_PROGRESS)
    heatmaps = [t for t in fig.data if t.type == "heatmap"]
    assert len(heatmaps) == 3 * 4 and heatmaps[0].z.shape == (3, 3)
    assert "Batch of 3 images" in info and "against **merged**" in info
    assert [r[0] for r in rows] == [1, 2, 3] and all(r[1] >= 0 for r in rows)


def test_similarity_maps_without_teachers_and_errors(zoo, tmp_path):
    with pytest.raises(gr.Error, match="at least 2 images"):
        teachers_view.maps(None, 1, 0, 0.9, None, None, "student_tgd", progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="choose at least one network"):
        teachers_view.maps([], 4, 0, 0.9, teachers_view.NONE, teachers_view.NONE,
                           teachers_view.NONE, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match=r"T1 \(raw images\): not one of the offered networks"):
        teachers_view.maps([], 4, 0, 0.9, "gone", None, None, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match=r"T2 \(persistence images\): not one of the offered"):
        teachers_view.maps([], 4, 0, 0.9, None, "/etc/passwd", None, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="the batch holds 40 images; at most 32"):
        teachers_view.maps(["x.png"] * 40, 0, 0, 0.9, "t1_raw", None, None,
                           progress=NO_PROGRESS)


def test_similarity_map_uploads_are_decoded_like_the_other_tabs(zoo, tmp_path):
    """The teachers tab decodes uploads as the explorer does: a wide photo is downscaled (not
    refused), a decompression bomb refused from its header in one sentence without the
    server's paths."""
    from PIL import Image

    wide, bomb = tmp_path / "wide.png", tmp_path / "bomb.png"
    Image.fromarray(np.tile(RNG_IMAGE, (1, 120, 1))).save(wide)  # 5760×40
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 megapixels in a 50 KB file
    _, info, _ = teachers_view.maps([str(wide)], 2, 0, 0.5, "t1_raw", None, None,
                                    progress=NO_PROGRESS)
    assert "wide.png: Downscaled to 1024×7 (original 5760×40)." in info
    with pytest.raises(gr.Error) as caught:
        teachers_view.maps([str(bomb)], 2, 0, 0.5, "t1_raw", None, None, progress=NO_PROGRESS)
    message = caught.value.message
    assert message.startswith("Image: too large (over 178,956,970 pixels")
    assert message.endswith("; upload a smaller image") and str(tmp_path) not in message


def test_teacher_choices_say_none_when_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("TGD_CHECKPOINT_DIR", str(tmp_path / "none"))
    assert teachers_view.choices("teacher2") == [teachers_view.NONE]


# -- models --------------------------------------------------------------------------------------

def test_models_table(zoo):
    rows, info = models_view.table()
    assert [r[0] for r in rows] == ["t1_raw", "plain_pi", "student_tgd"]
    student = dict(zip(models_view.COLUMNS, rows[2], strict=True))
    assert (student["method"], student["accuracy (%)"], student["ECE"]) == ("tgd", 77.0, 0.05)
    assert "3 networks" in info and "Teachers missing" not in info


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_models_export_validates_and_offers_the_files(zoo, fmt):
    files, report = models_view.export("student_tgd", fmt, progress=NO_PROGRESS)
    model, sidecar = files
    assert os.path.getsize(model) > 0 and json.loads(open(sidecar).read())["validation"]
    assert "argmax agrees" in report and model.startswith(get_upload_folder())
    assert os.path.basename(model).startswith("student_tgd.")
    exported = os.path.join(os.environ["TGD_STATE_DIR"], "exports", os.path.basename(model))
    assert open(exported, "rb").read() == open(model, "rb").read()
    with pytest.raises(gr.Error, match="network: not one of the offered networks"):
        models_view.export("no_such_network", fmt, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="network: not one of the offered networks"):
        models_view.export(str(zoo / "student_tgd.pt"), fmt, progress=NO_PROGRESS)
    with pytest.raises(gr.Error, match="format: not one of the offered choices"):
        models_view.export("student_tgd", "pickle", progress=NO_PROGRESS)


# -- jobs ----------------------------------------------------------------------------------------

FORM = dict(method="tgd", network="wrn16_1", student_input="raw", t1="t1_raw", t2="plain_pi",
            init_student=None, epochs=1, batch_size=32, lr=0.1, alpha=0.9, beta=3000.0,
            tau=4.0, seed=0, train_subset=64, test_subset=0)


def test_job_config_maps_the_form_to_the_method(zoo):
    kind, cfg = jobs_view.job_config(**FORM)
    assert kind == "distill"
    assert cfg["teachers"] == {"t1": str(zoo / "t1_raw.pt"), "t2": str(zoo / "plain_pi.pt")}
    assert cfg["method_params"] == {"alpha": 0.9, "beta": 3000.0, "temperature": 4.0}
    assert (cfg["train_subset"], cfg["test_subset"]) == (64, None)
    kind, cfg = jobs_view.job_config(**{**FORM, "method": "kd"})
    assert cfg["method_params"] == {"temperature": 4.0}
    assert cfg["teachers"] == {"t1": str(zoo / "t1_raw.pt")}
    kind, cfg = jobs_view.job_config(**{**FORM, "method": "scratch",
                                        "init_student": "student_tgd"})
    assert kind == "train" and cfg["teachers"] == {} and cfg["method_params"] == {}
    assert cfg["init_student"] == str(zoo / "student_tgd.pt")
    with pytest.raises(Exception, match="teachers: method 'mtkd' needs a T2"):
        jobs_view.job_config(**{**FORM, "method": "mtkd", "t2": jobs_view.NONE})


def test_checkpoint_choices_are_the_zoo_by_role(zoo):
    assert jobs_view.checkpoint_choices("teacher1") == ["t1_raw"]
    assert jobs_view.checkpoint_choices("teacher2") == ["plain_pi"]
    assert jobs_view.checkpoint_choices("student") == [jobs_view.NONE, "student_tgd"]


def test_submit_validates_and_queues(zoo, kinds):
    with pytest.raises(gr.Error, match="Epochs: must be ≥ 1"):
        jobs_view.submit(*{**FORM, "method": "scratch", "epochs": 0}.values())
    with pytest.raises(gr.Error, match="Batch size: must be ≥ 1"):
        jobs_view.submit(*{**FORM, "method": "scratch", "batch_size": -1}.values())
    note, table, job_id = jobs_view.submit(*{**FORM, "method": "scratch"}.values())
    assert f"Job **{job_id}** (train, scratch) queued; worker pid 4242" in note
    assert table_rows(table)[0][:4] == [job_id, "train", "scratch", "queued"]


def test_cancel_resume_details_files_and_poll(zoo, kinds):
    _, _, job_id = jobs_view.submit(*{**FORM, "method": "scratch"}.values())
    with pytest.raises(gr.Error, match="Selected job: select a job"):
        jobs_view.cancel(None)
    with pytest.raises(gr.Error, match="Selected job: no job 999"):
        jobs_view.cancel(999)
    with pytest.raises(gr.Error, match="Selected job: must be a whole number"):
        jobs_view.resume(job_id + 0.5)
    interactive = lambda job: [u["interactive"] for u in jobs_view.buttons(job)]  # noqa: E731
    assert interactive(jobs_view.store().get(job_id)) == [True, False]  # queued: cancel only
    assert interactive(None) == [False, False]
    assert table_rows(jobs_view.cancel(job_id))[0][3] == "cancelled"
    assert interactive(jobs_view.store().get(job_id)) == [False, True]  # cancelled: resume only
    with pytest.raises(gr.Error, match="only queued or running"):
        jobs_view.cancel(job_id)
    assert table_rows(jobs_view.resume(job_id))[0][3] == "queued"

    job = jobs_view.store().get(job_id)
    job.run_dir.mkdir(parents=True)
    metrics = [{"epoch": e, "train_ce": 2.0 / e, "train_accuracy": 10.0 * e,
                "test_accuracy": 9.0 * e} for e in (1, 2)]
    job.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in metrics))
    (job.run_dir / "latest.pt").write_bytes(b"x")
    fig, text = jobs_view.details(job_id)
    assert [t.name for t in fig.data] == ["train_ce", "train_accuracy", "test_accuracy"]
    assert f"**Job {job_id}** · train · **queued**" in text
    assert [os.path.basename(f) for f in jobs_view.job_files(job_id)] == \
        ["latest.pt", "metrics.jsonl"]

    table, fig2, text2, files, cancel, resume, seen = jobs_view.poll(job_id, {})
    assert table_rows(table)[0][0] == job_id and seen["status"] == "queued" and len(files) == 2
    assert (cancel["interactive"], resume["interactive"]) == (True, False)
    again = jobs_view.poll(job_id, seen)
    assert all(isinstance(x, type(gr.skip())) for x in again[1:6])
    assert jobs_view.select_job(job_id)[3:5] == jobs_view.buttons(jobs_view.store().get(job_id))
    assert jobs_view.details(None)[0] is None and jobs_view.job_files(999) == []


# -- the running app -----------------------------------------------------------------------------

def test_views_through_gradio_client(zoo, kinds):
    from gradio_client import handle_file
    from PIL import Image

    from app.ui import build_app

    demo = build_app().queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = gradio_client(url)
        rows, info = client.predict(api_name="/models")
        assert [r[0] for r in rows["data"]] == ["t1_raw", "plain_pi", "student_tgd"]
        path = zoo.parent / "img.png"
        Image.fromarray(RNG_IMAGE).save(path)
        out = client.predict(handle_file(str(path)), "contrast", 4, 0, api_name="/noise_predict")
        assert "contrast, severity 4" in out[3] and "student_tgd" in out[3]
        note, table, job_id = client.predict(*{**FORM, "method": "scratch"}.values(),
                                             api_name="/submit_job")
        assert "queued" in note and table["data"][0][3] == "queued"
        with pytest.raises(Exception, match="needs a T1"):
            client.predict(*{**FORM, "method": "kd", "t1": jobs_view.NONE}.values(),
                           api_name="/submit_job")
    finally:
        demo.close()
