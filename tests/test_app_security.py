"""Hardening of the app (#16): its handlers accept only what the views offer, files reach the
browser only through the views, and it does not go public without a password unasked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
gr = pytest.importorskip("gradio")

from app import jobs_view  # noqa: E402
from app import screenshots as drive  # noqa: E402
from app.__main__ import PublicWithoutAuth, check_exposure, is_loopback  # noqa: E402
from tests.waiting import SLOW, gradio_client  # noqa: E402
from tests.zoo_helpers import save_net, use_zoo  # noqa: E402
from tgd_core.core.paths import PROJECT_ROOT  # noqa: E402
from tgd_core.jobs import Job, JobStore  # noqa: E402

FORM = dict(method="tgd", network="wrn16_1", student_input="raw", t1="t1_raw", t2="plain_pi",
            init_student=None, epochs=1, batch_size=32, lr=0.1, alpha=0.9, beta=3000.0,
            tau=4.0, seed=0, train_subset=64, test_subset=0)


def succeeded_job(store: JobStore, input_kind: str = "raw", status: str = "succeeded") -> Job:
    """A train job finished with ``status``, with the files a real run leaves: checkpoints
    (real networks), its config, metrics and log."""
    job = store.submit("train", {"method": "scratch", "student_input": input_kind, "epochs": 1})
    assert store.claim(os.getpid()).id == job.id
    job.checkpoint_dir.mkdir(parents=True)
    for seed, name in enumerate(("best.pt", "latest.pt")):
        save_net(job.checkpoint_dir / name, seed, input_kind)
    (job.checkpoint_dir / "config.json").write_text(json.dumps(job.config))
    job.metrics_path.write_text(json.dumps({"epoch": 1, "test_accuracy": 10.0}) + "\n")
    job.log_path.write_text("epoch 1 done\n")
    store.finish(job.id, job.attempt, status)
    return store.get(job.id)


@pytest.fixture
def state(tmp_path, monkeypatch):
    """A tiny zoo and an empty job store; no worker process is started."""
    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path / "state"))
    use_zoo(monkeypatch, tmp_path)
    monkeypatch.setattr(jobs_view, "start_worker", lambda: 4242)
    return jobs_view.store()


def submit(**changes):
    return jobs_view.submit(*{**FORM, **changes}.values())


# -- 1. the job form takes only what it offers ---------------------------------------------------

def test_succeeded_jobs_checkpoints_are_offered_by_name(state):
    raw, pi = succeeded_job(state, "raw"), succeeded_job(state, "pi")
    succeeded_job(state, "raw", status="failed")  # a failed job's files are not offered
    assert jobs_view.checkpoint_choices("teacher1") == \
        ["t1_raw", f"job {raw.id} best.pt", f"job {raw.id} latest.pt"]
    assert jobs_view.checkpoint_choices("teacher2") == \
        ["plain_pi", f"job {pi.id} best.pt", f"job {pi.id} latest.pt"]
    assert f"job {pi.id} best.pt" in jobs_view.checkpoint_choices("student")
    note, _, job_id = submit(t1=f"job {raw.id} best.pt", init_student=f"job {raw.id} latest.pt")
    config = state.get(job_id).config
    assert config["teachers"]["t1"] == str(raw.checkpoint_dir / "best.pt")
    assert config["init_student"] == str(raw.checkpoint_dir / "latest.pt")


@pytest.mark.parametrize("changes, message", [
    ({"t1": "/etc/passwd"}, r"T1 teacher \(raw images\): not one of the offered checkpoints"),
    ({"t2": "../../checkpoints/plain_pi.pt"}, r"T2 teacher \(persistence images\): not one of"),
    ({"init_student": "/etc/passwd"}, "Initialise the student from: not one of the offered"),
    ({"t1": "plain_pi"}, r"T1 teacher \(raw images\): not one of the offered checkpoints"),
    ({"method": "os.system"}, "Method: not one of the offered choices"),
    ({"network": "resnet1000"}, "Network: not one of the offered choices"),
    ({"student_input": "both"}, "Input: not one of the offered choices"),
    ({"epochs": 10**12}, "Epochs: must be ≤ 10000"),
    ({"epochs": 1e12}, "Epochs: must be ≤ 10000"),
    ({"epochs": None}, "Epochs: a number is required"),
    ({"epochs": 2.5}, "Epochs: must be a whole number"),
    ({"epochs": float("nan")}, "Epochs: must be a finite number"),
    ({"epochs": "3"}, "Epochs: must be a number, not str"),
    ({"batch_size": 10**6}, "Batch size: must be ≤ 8192"),
    ({"lr": float("inf")}, "Learning rate: must be a finite number"),
    ({"lr": 0}, "Learning rate: must be > 0"),
    ({"alpha": 1.5}, r"α \(T1's share\): must be ≤ 1"),
    ({"beta": -1}, r"β \(similarity weight\): must be ≥ 0"),
    ({"tau": float("nan")}, r"τ \(temperature\): must be a finite number"),
    ({"seed": -1}, "Seed: must be ≥ 0"),
    ({"seed": 2**64}, "Seed: must be ≤ 4294967295"),
    ({"train_subset": 10**9}, r"Training images \(0 = all\): must be ≤ 10000000"),
    ({"test_subset": -5}, r"Test images \(0 = all\): must be ≥ 0"),
])
def test_submit_refuses_what_the_form_does_not_offer(state, changes, message):
    with pytest.raises(gr.Error, match=message):
        submit(**changes)
    assert state.list() == []


def test_a_zoo_checkpoint_is_picked_by_name_not_by_path(state, tmp_path):
    with pytest.raises(gr.Error, match="T1 teacher"):
        submit(t1=str(tmp_path / "checkpoints" / "t1_raw.pt"))
    assert state.list() == []


# -- the running app: the API and /gradio_api/file= ----------------------------------------------

@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The app on a free local port (as ``python -m app`` launches it) over a store with one
    succeeded job, a PI cache file and an export; even GRADIO_ALLOWED_PATHS naming the state
    folder must not expose it."""
    tmp = tmp_path_factory.mktemp("security")
    state_dir = tmp / "state"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TGD_STATE_DIR", str(state_dir))
        mp.setenv("GRADIO_ALLOWED_PATHS", str(state_dir))
        use_zoo(mp, tmp)
        mp.setattr(jobs_view, "start_worker", lambda: 4242)
        job = succeeded_job(jobs_view.store())
        private = {"store": jobs_view.store().db_path,
                   "checkpoint": job.checkpoint_dir / "best.pt",
                   "config": job.checkpoint_dir / "config.json", "log": job.log_path,
                   "pi cache": state_dir / "cache" / "pi_paper_test.npz",
                   "export": state_dir / "exports" / "student_tgd.onnx"}
        for path in private.values():
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                path.write_bytes(b"private")
        with drive.running_app() as url:

            yield SimpleNamespace(url=url, job=job, private=private,
                                  client=gradio_client(url))


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=SLOW) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("what", ["store", "checkpoint", "config", "log", "pi cache", "export"])
def test_state_files_are_not_served_by_url(app, what):
    path = app.private[what]
    assert path.exists()
    for spelled in (str(path), quote(str(path)), str(path.parent / ".." / path.parent.name /
                                                      path.name)):
        assert http_status(f"{app.url}gradio_api/file={spelled}") in (403, 404), spelled


def test_a_jobs_files_download_through_its_view(app):
    _, text, files = app.client.predict(app.job.id, api_name="/select_job")[:3]
    names = sorted(Path(f).name for f in files)
    assert names == ["best.pt", "config.json", "latest.pt", "metrics.jsonl", "output.log"]
    best = next(f for f in files if f.endswith("best.pt"))
    assert Path(best).read_bytes() == app.private["checkpoint"].read_bytes()
    _, text, files = app.client.predict(app.job.id + 1, api_name="/select_job")[:3]
    assert "Selected job: no job" in text and not files


def test_the_api_refuses_paths_and_unbounded_numbers(app):
    before = [j.id for j in jobs_view.store().list()]
    for changes, message in [({"t1": "/etc/passwd"}, "T1 teacher (raw images): not one of the "
                                                     "offered checkpoints"),
                             ({"init_student": "/etc/passwd"}, "Initialise the student from"),
                             ({"epochs": 10**12}, "Epochs: must be ≤ 10000"),
                             ({"epochs": None}, "Epochs: a number is required"),
                             ({"epochs": 2.5}, "Epochs: must be a whole number")]:
        with pytest.raises(Exception, match=message.replace("(", r"\(").replace(")", r"\)")):
            app.client.predict(*{**FORM, **changes}.values(), api_name="/submit_job")
    assert [j.id for j in jobs_view.store().list()] == before
    note, _, job_id = app.client.predict(
        *{**FORM, "t1": f"job {app.job.id} best.pt"}.values(), api_name="/submit_job")
    assert f"Job **{job_id}** (distill, tgd) queued" in note


def test_models_export_takes_a_zoo_name_never_a_path(app):
    with pytest.raises(Exception, match="network: not one of the offered networks|not in the "
                                        "list of choices"):
        app.client.predict(str(app.private["checkpoint"]), "onnx", api_name="/export")


# -- 3. a public bind needs a password or an explicit flag ---------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    assert check_exposure(host, share=False, auth=False, allow_public=False) == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org", ""])
def test_public_hosts_need_auth_or_the_flag(host):
    assert not is_loopback(host)
    with pytest.raises(PublicWithoutAuth, match="--auth USER:PASSWORD.*"
                                                "--allow-public-without-auth"):
        check_exposure(host, share=False, auth=False, allow_public=False)
    assert check_exposure(host, share=False, auth=True, allow_public=False) == ""
    warning = check_exposure(host, share=False, auth=False, allow_public=True)
    assert "PUBLIC and has NO PASSWORD" in warning and len(warning.splitlines()) >= 4


def test_share_counts_as_public():
    with pytest.raises(PublicWithoutAuth, match="--share"):
        check_exposure("127.0.0.1", share=True, auth=False, allow_public=False)
    assert check_exposure("127.0.0.1", share=True, auth=True, allow_public=False) == ""


def run_app(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TGD_APP_")}
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT,
                          env={**environ, **env}, capture_output=True, text=True, timeout=SLOW)


@pytest.mark.parametrize("args, env", [(["--host", "0.0.0.0"], {}),
                                       ([], {"TGD_APP_HOST": "0.0.0.0"}),
                                       (["--share"], {})])
def test_python_m_app_refuses_a_public_bind_without_auth(args, env):
    done = run_app(*args, **env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refusing to serve without a password" in lines[0]
    assert "--auth USER:PASSWORD" in lines[0] and "--allow-public-without-auth" in lines[0]


def test_python_m_app_rejects_a_malformed_auth():
    done = run_app("--host", "0.0.0.0", "--auth", "nopassword")
    assert done.returncode == 2 and "--auth takes USER:PASSWORD" in done.stderr
