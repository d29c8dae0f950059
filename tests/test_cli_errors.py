"""One error path for the CLI: every failure of the user's making is one line ``tgd: error: …``
on stderr with exit status 2, naming the path or field at fault; ``--debug`` shows the
traceback; a bug is one ``tgd: internal error: …`` line with exit status 1."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tgd_core import cli
from tgd_core.core.errors import TGDError

# recipe and config files with one thing wrong each (written into the test's folder)
BAD_FILES = {
    "corrupt.json": '{"epochs": ',
    "list.json": "[1, 2]",
    "list.yaml": "- a\n- b\n",
    "syntax.yaml": "name: x\nmethods: [\n",
    "scalar.yaml": "just a string\n",
    "unknown.yaml": "name: x\nmethods: {scratch: {}}\nbogus: 1\n",
    "types.yaml": "name: x\nmethods: {scratch: {}}\nseeds: three\n",
    "ok.yaml": "name: x\nmethods: {scratch: {}}\nseeds: [0]\n",
    "bad.pt": "not a checkpoint",
}
TINY_RUN = ["--epochs", "1", "--train-subset", "8", "--test-subset", "8"]

# (id, argv with {d} = the test's folder, strings the error line must contain)
CASES = [
    # pi
    ("pi-out-missing-folder", ["pi", "--input", "{d}/imgs.npy", "--out", "{d}/nodir/o.npz"],
     ["cannot write {d}/nodir/o.npz", "no such folder {d}/nodir"]),
    ("pi-out-under-a-file", ["pi", "--input", "{d}/imgs.npy", "--out", "{d}/afile/o.npz"],
     ["cannot write {d}/afile/o.npz", "{d}/afile is a file"]),
    ("pi-out-is-a-folder", ["pi", "--input", "{d}/imgs.npy", "--out", "{d}/folder.npz"],
     ["{d}/folder.npz", "is a folder"]),
    ("pi-out-is-a-device", ["pi", "--input", "{d}/imgs.npy", "--out", "/dev/null"],
     ["cannot write /dev/null", "not a regular file"]),  # not /dev/null.npz, a file in /dev
    ("pi-input-missing", ["pi", "--input", "{d}/missing.npy", "--out", "{d}/o.npz"],
     ["{d}/missing.npy"]),
    ("pi-input-empty-folder", ["pi", "--input", "{d}/adir", "--out", "{d}/o.npz"],
     ["{d}/adir", "no image files"]),
    ("pi-input-not-an-image", ["pi", "--input", "{d}/afile", "--out", "{d}/o.npz"],
     ["{d}/afile", "the file is empty"]),
    ("pi-input-zero-byte-npy", ["pi", "--input", "{d}/zero.npy", "--out", "{d}/o.npz"],
     ["{d}/zero.npy", "not a readable .npy array"]),
    ("pi-bad-setting", ["pi", "--input", "{d}/imgs.npy", "--out", "{d}/o.npz",
                        "--resolution", "0"], ["resolution"]),
    ("pi-dataset-missing", ["pi", "--dataset", "cifar10", "--data-dir", "{d}/nodir",
                            "--split", "test"], ["{d}/nodir"]),
    ("pi-bad-shard", ["pi", "--dataset", "cifar10", "--shard", "x"], ["--shard"]),
    # evaluate
    ("evaluate-checkpoint-missing", ["evaluate", "--checkpoint", "{d}/missing.pt"],
     ["{d}/missing.pt"]),
    ("evaluate-checkpoint-is-a-folder", ["evaluate", "--checkpoint", "{d}/adir"], ["{d}/adir"]),
    ("evaluate-checkpoint-corrupt", ["evaluate", "--checkpoint", "{d}/bad.pt"], ["{d}/bad.pt"]),
    ("evaluate-data-missing", ["evaluate", "--checkpoint", "{d}/tiny.pt", "--data-dir",
                               "{d}/nodir"], ["{d}/nodir"]),
    ("evaluate-sweep-output-format", ["evaluate", "--checkpoint", "{d}/tiny.pt", "--sweep",
                                      "--output", "{d}/table.txt"],
     ["{d}/table.txt", "must be .csv or .json"]),  # before the sweep, not after it
    ("evaluate-sweep-output-under-a-file", ["evaluate", "--checkpoint", "{d}/tiny.pt",
                                            "--sweep", "--output", "{d}/afile/t.csv"],
     ["{d}/afile", "is a file, not a folder"]),
    # train
    ("train-cinic10-missing", ["train", "--dataset", "cinic10", "--data-dir", "{d}/adir",
                               *TINY_RUN, "--out", "{d}/run"], ["{d}/adir", "ImageFolder"]),
    ("train-config-missing", ["train", "--config", "{d}/missing.json"],
     ["{d}/missing.json", "No such file"]),
    ("train-config-is-a-folder", ["train", "--config", "{d}/adir"], ["{d}/adir", "directory"]),
    ("train-config-corrupt", ["train", "--config", "{d}/corrupt.json"],
     ["{d}/corrupt.json", "not valid JSON"]),
    ("train-config-not-an-object", ["train", "--config", "{d}/list.json"],
     ["{d}/list.json", "JSON object"]),
    ("train-config-binary", ["train", "--config", "{d}/binary.bin"], ["{d}/binary.bin"]),
    ("train-set-syntax", ["train", "--set", "epochs"], ["--set", "'epochs'"]),
    ("train-set-unknown-field", ["train", "--set", "nope=1"], ["nope"]),
    ("train-set-wrong-type", ["train", "--set", "epochs=abc"], ["epochs"]),
    ("train-raw-run-bad-pi", ["train", "--input", "raw", "--set", 'pi={"mode": "bogus"}',
                              "--out", "{d}/run", *TINY_RUN], ["pi: unknown PI mode 'bogus'"]),
    ("train-bad-pi-field", ["train", "--set", "pi.cubical=3", "--set", "pi.mode=cubical",
                            "--out", "{d}/run", *TINY_RUN], ["pi:", "'cubical' must be"]),
    ("train-out-under-a-file", ["train", "--out", "{d}/afile/run", *TINY_RUN],
     ["{d}/afile/run", "{d}/afile is a file"]),
    ("train-out-is-a-file", ["train", "--out", "{d}/afile", *TINY_RUN],
     ["{d}/afile", "is a file"]),
    # distill
    ("distill-teacher-missing", ["distill", "--method", "kd", "--teacher1", "{d}/missing.pt",
                                 "--out", "{d}/run", *TINY_RUN], ["{d}/missing.pt"]),
    ("distill-teacher-corrupt", ["distill", "--method", "kd", "--teacher1", "{d}/bad.pt",
                                 "--out", "{d}/run", *TINY_RUN], ["{d}/bad.pt"]),
    ("distill-unknown-method", ["distill", "--method", "bogus"], ["method", "'bogus'"]),
    # experiment
    ("experiment-recipe-missing", ["experiment", "{d}/missing.yaml"], ["{d}/missing.yaml"]),
    ("experiment-recipe-is-a-folder", ["experiment", "{d}/adir"], ["{d}/adir"]),
    ("experiment-recipe-list", ["experiment", "{d}/list.yaml"],
     ["{d}/list.yaml", "YAML mapping", "list"]),
    ("experiment-recipe-scalar", ["experiment", "{d}/scalar.yaml"], ["{d}/scalar.yaml"]),
    ("experiment-recipe-syntax", ["experiment", "{d}/syntax.yaml"],
     ["{d}/syntax.yaml", "not valid YAML", "line 3"]),
    ("experiment-recipe-unknown-key", ["experiment", "{d}/unknown.yaml"],
     ["{d}/unknown.yaml", "bogus"]),
    ("experiment-recipe-wrong-type", ["experiment", "{d}/types.yaml"],
     ["{d}/types.yaml", "seeds"]),
    ("experiment-recipe-binary", ["experiment", "{d}/binary.bin"], ["{d}/binary.bin"]),
    ("experiment-only-not-a-row", ["experiment", "{d}/ok.yaml", "--plan", "--only", "kd"],
     ["--only kd", "not a row of recipe x", "scratch"]),
    ("experiment-seeds-not-a-seed", ["experiment", "{d}/ok.yaml", "--plan", "--seeds", "0", "7"],
     ["--seeds 7", "not a seed of recipe x", "their seeds: 0"]),
    ("experiment-out-under-a-file", ["experiment", "{d}/ok.yaml", "--plan", "--out",
                                     "{d}/afile/x"], ["{d}/afile/x", "{d}/afile is a file"]),
    # jobs
    ("jobs-config-file-missing", ["jobs", "submit", "train", "--config", "@{d}/missing.json"],
     ["{d}/missing.json"]),
    ("jobs-config-file-is-a-folder", ["jobs", "submit", "train", "--config", "@{d}/adir"],
     ["{d}/adir"]),
    ("jobs-config-file-corrupt", ["jobs", "submit", "train", "--config", "@{d}/corrupt.json"],
     ["{d}/corrupt.json", "not valid JSON"]),
    ("jobs-config-not-an-object", ["jobs", "submit", "train", "--config", "[1]"],
     ["--config", "JSON object"]),
    ("jobs-config-syntax", ["jobs", "submit", "train", "--config", "{bad"],
     ["--config", "not valid JSON"]),
    ("jobs-set-syntax", ["jobs", "submit", "train", "--set", "epochs"], ["--set"]),
    ("jobs-set-unknown-field", ["jobs", "submit", "train", "--set", "nope=1"], ["nope"]),
    ("jobs-set-bad-pi", ["jobs", "submit", "train", "--set", "pi.mode=bogus"],
     ["pi", "'bogus'"]),
    ("jobs-unknown-kind", ["jobs", "submit", "nope"], ["'nope'"]),
    ("jobs-experiment-recipe-list", ["jobs", "submit", "experiment", "--set",
                                     "recipe={d}/list.yaml"], ["{d}/list.yaml"]),
    ("jobs-experiment-only-not-a-row", ["jobs", "submit", "experiment", "--config",
                                        '{"recipe": "{d}/ok.yaml", "only": ["kd"]}'],
     ["only kd", "not a row of recipe x"]),
    ("jobs-experiment-seeds-not-a-seed", ["jobs", "submit", "experiment", "--config",
                                          '{"recipe": "{d}/ok.yaml", "seeds": [3]}'],
     ["seeds 3", "not a seed of recipe x"]),
    ("jobs-no-such-job", ["jobs", "show", "999"], ["999"]),
    ("jobs-state-dir-under-a-file", ["jobs", "list", "--state-dir", "{d}/afile/s"],
     ["{d}/afile/s"]),
    # export
    ("export-checkpoint-missing", ["export", "--checkpoint", "{d}/missing.pt", "--out",
                                   "{d}/m.onnx"], ["{d}/missing.pt"]),
    ("export-checkpoint-corrupt", ["export", "--checkpoint", "{d}/bad.pt", "--out",
                                   "{d}/m.onnx"], ["{d}/bad.pt"]),
    ("export-out-under-a-file", ["export", "--checkpoint", "{d}/tiny.pt", "--out",
                                 "{d}/afile/m.onnx"], ["{d}/afile/m.onnx", "{d}/afile"]),
    ("export-out-is-a-folder", ["export", "--checkpoint", "{d}/tiny.pt", "--out", "{d}/adir"],
     ["{d}/adir", "folder"]),
    ("export-out-is-a-fifo", ["export", "--checkpoint", "{d}/tiny.pt", "--out",
                              "{d}/fifo.npz"], ["cannot write {d}/fifo.npz", "not a regular file"]),
    ("pi-out-is-a-fifo", ["pi", "--input", "{d}/imgs.npy", "--out", "{d}/fifo.npz"],
     ["cannot write {d}/fifo.npz", "not a regular file"]),
]


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A freshly initialised 3-class WRN16-1 checkpoint (valid, never trained)."""
    from tgd_core.data.normalization import CIFAR10_RAW
    from tgd_core.nets.checkpoints import save_checkpoint
    from tgd_core.nets.models import build_model

    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt",
                           build_model("wrn16_1", num_classes=3), input_kind="raw",
                           normalization=CIFAR10_RAW, git_commit="")


@pytest.fixture
def workdir(tmp_path: Path, tiny_checkpoint: Path, monkeypatch) -> Path:
    """A folder of good and bad inputs: images, a file, folders, bad configs and recipes."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "imgs.npy", rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8))
    (tmp_path / "afile").write_text("")
    (tmp_path / "zero.npy").write_bytes(b"")
    (tmp_path / "adir").mkdir()
    (tmp_path / "folder.npz").mkdir()
    os.mkfifo(tmp_path / "fifo.npz")  # an --out that must stay a FIFO (as root, /dev/null)
    (tmp_path / "binary.bin").write_bytes(b"\xff\xfe\x00\x81")
    (tmp_path / "tiny.pt").symlink_to(tiny_checkpoint)
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text)
    monkeypatch.setenv("TGD_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``tgd ARGV`` in this process: (exit status, stdout, stderr)."""
    status = cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_error_line(err: str, *names: str) -> str:
    """``err`` is exactly one ``tgd: error:`` line, without a traceback, naming ``names``."""
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert err.startswith("tgd: error: "), err
    assert "Traceback" not in err
    for name in names:
        assert name in err, (name, err)
    return err.strip()


@pytest.mark.parametrize("argv, names", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_user_error_is_one_line_with_exit_2(workdir, capsys, argv, names):
    fill = [a.replace("{d}", str(workdir)) for a in argv]
    status, out, err = run_cli(fill, capsys)
    assert status == 2, err
    line = assert_one_error_line(err, *[n.replace("{d}", str(workdir)) for n in names])
    assert line.startswith(f"tgd: error: {' '.join(argv[:2]) if argv[0] == 'jobs' else argv[0]}:")
    assert out == ""


def test_out_into_a_read_only_folder(workdir, capsys):
    folder = workdir / "ro"
    folder.mkdir(mode=0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("permissions are not enforced for this user (root): the folder is "
                        "writable anyway; test_pi_write_failure covers a failing write")
        status, _, err = run_cli(["pi", "--input", "imgs.npy", "--out", "ro/o.npz"], capsys)
        assert status == 2
        assert_one_error_line(err, "ro/o.npz", "not writable")
        status, _, err = run_cli(["train", "--out", "ro/run", *TINY_RUN], capsys)
        assert status == 2
        assert_one_error_line(err, "ro/run", "not writable")
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "No space left on device"),
                                          (errno.EROFS, "Read-only file system")])
def test_pi_write_failure(workdir, capsys, monkeypatch, code, reason):
    """A disk that fills up or turns read-only while writing: one line naming the output."""
    def failing_write(path, write, **_):
        raise OSError(code, os.strerror(code), f".{Path(path).name}.tmp")

    monkeypatch.setattr("tgd_core.core.fileio.atomic_write", failing_write)
    status, _, err = run_cli(["pi", "--input", "imgs.npy", "--out", "o.npz"], capsys)
    assert status == 2
    assert assert_one_error_line(err) == f"tgd: error: pi: cannot write o.npz: {reason}"


def test_an_unconverted_os_error_is_still_one_line(workdir, capsys, monkeypatch):
    def run(args):
        raise PermissionError(errno.EACCES, "Permission denied", "/x/y.npz")

    monkeypatch.setattr("tgd_core.commands.pi.run", run)
    status, _, err = run_cli(["pi", "--input", "imgs.npy", "--out", "o.npz"], capsys)
    assert status == 2
    assert assert_one_error_line(err) == "tgd: error: pi: /x/y.npz: Permission denied"


def test_ctrl_c_is_one_line_with_exit_130(workdir, capsys, monkeypatch):
    def run(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("tgd_core.commands.pi.run", run)
    status, _, err = run_cli(["pi", "--input", "imgs.npy", "--out", "o.npz"], capsys)
    assert status == 130
    assert assert_one_error_line(err) == "tgd: error: pi: interrupted"


def test_a_bug_is_one_internal_error_line_with_exit_1(workdir, capsys, monkeypatch):
    def run(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("tgd_core.commands.pi.run", run)
    status, _, err = run_cli(["pi", "--input", "imgs.npy", "--out", "o.npz"], capsys)
    assert status == 1
    assert err == ("tgd: internal error: RuntimeError: boom second line "
                   "(run with --debug for the traceback)\n")


def test_debug_raises_instead(workdir, monkeypatch):
    with pytest.raises(TGDError, match="no such folder"):
        cli.main(["--debug", "pi", "--input", "imgs.npy", "--out", "nodir/o.npz"])

    def run(args):
        raise RuntimeError("boom")

    monkeypatch.setattr("tgd_core.commands.pi.run", run)
    with pytest.raises(RuntimeError, match="boom"):
        cli.main(["--debug", "pi", "--input", "imgs.npy", "--out", "o.npz"])


def test_a_raw_image_run_validates_its_pi_setting():
    from tgd_core.training import TrainConfig

    with pytest.raises(TGDError, match="pi: unknown PI mode 'bogus'"):
        TrainConfig.build(student_input="raw", pi={"mode": "bogus"})
    with pytest.raises(TGDError, match="pi: bad PI representation .*spred"):
        TrainConfig.build(pi={"mode": "paper", "spred": 0.1})
    assert TrainConfig.build(pi={"mode": "cubical", "image": {"resolution": [16, 16]}}).pi == {
        "mode": "cubical", "image": {"resolution": [16, 16]}}  # kept as given


def tgd(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real ``tgd`` process (``python -m tgd_core``)."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TGD_STATE_DIR": str(cwd)}
    return subprocess.run([sys.executable, "-m", "tgd_core", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv, name", [
    (["pi", "--input", "imgs.npy", "--out", "nodir/o.npz"], "nodir/o.npz"),
    (["experiment", "list.yaml"], "list.yaml"),
])
def test_the_real_process_exits_2_with_one_line(workdir, argv, name):
    proc = tgd(*argv, cwd=workdir)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, name)


def test_the_real_process_shows_the_traceback_with_debug(workdir):
    proc = tgd("--debug", "pi", "--input", "imgs.npy", "--out", "nodir/o.npz", cwd=workdir)
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert "TGDError: cannot write nodir/o.npz: no such folder nodir" in proc.stderr


def test_a_reader_that_left_ends_the_command_quietly(workdir):
    """``tgd jobs list --json | head -c 10``: the reader of the output has gone, so the write
    fails (EPIPE); the command ends as a pipeline's writer does — no message, status 141 —
    instead of reporting "tgd: error: …: Broken pipe" as the user's error (exit 2). The pipe's
    read end is closed before the process starts, so every write fails."""
    read, write = os.pipe()
    os.close(read)
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "TGD_STATE_DIR": str(workdir)}
    try:
        proc = subprocess.run([sys.executable, "-m", "tgd_core", "jobs", "list", "--json"],
                              cwd=workdir, env=env, stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=300)
    finally:
        os.close(write)
    assert (proc.returncode, proc.stderr) == (141, "")
