"""Ctrl-C and SIGTERM stop training at a step boundary with ``latest.pt`` saved
(tgd_core/core/interrupts.py, tgd_core/training/stopping.py): in the handler itself, in the
loop (the resumed run ends with the weights of an uninterrupted one), in ``tgd train`` and in
``tgd experiment --parallel`` — whose workers, before this, trained on to the end when SIGINT
reached the experiment's process alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.waiting import SLOW, wait_for
from tgd_core.core.interrupts import stop_requests

TINY = {"epochs": 2, "train_subset": 16, "test_split": "test_lossless_1k", "test_subset": 8,
        "batch_size": 4, "threads": 1}
ENDLESS = {"train_subset": 64, "test_split": "test_lossless_1k", "test_subset": 8,
           "epochs": 500, "batch_size": 32, "threads": 1, "checkpoint_every_steps": 1}


def test_the_first_signal_asks_the_second_interrupts_and_the_handlers_come_back() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with stop_requests(notice="test") as asked:
            assert not asked()
            signal.raise_signal(sig)  # runs the handler before it returns
            assert asked()
            with pytest.raises(KeyboardInterrupt):
                signal.raise_signal(signal.SIGINT)
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_outside_the_main_thread_nothing_is_caught() -> None:
    import threading

    def in_thread() -> None:
        with stop_requests() as asked:
            seen.append((asked(), signal.getsignal(signal.SIGINT)))

    seen, before = [], signal.getsignal(signal.SIGINT)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join()
    assert seen == [(False, before)]


class SignalAtStep:
    """A run context that sends this process ``sig`` from its progress report of step
    ``at`` (1-based, counted over the whole run), as a user's Ctrl-C would arrive."""

    def __init__(self, asked, at: int, sig: int = signal.SIGINT) -> None:
        from tgd_core.training.stopping import StopWhen

        self.stop, self.at, self.sig, self.steps = StopWhen(asked=asked), at, sig, 0

    def progress(self, *args, **kwargs) -> None:
        self.steps += 1
        if self.steps == self.at:
            signal.raise_signal(self.sig)

    def should_stop(self) -> bool:
        return self.stop.should_stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_run_at_the_next_step_and_the_resume_equals_an_uninterrupted_run(
        tmp_path: Path, sig: int) -> None:
    """Asked during step 3 of 8, the run stops after step 4 (the stop is read as the step's
    results are), saves latest.pt, raises Interrupted; resumed, its weights are the
    uninterrupted run's bit for bit."""
    import torch

    from tgd_core.nets.checkpoints import load_checkpoint
    from tgd_core.training import Interrupted, TrainConfig, interruptible, run_training

    cut = TrainConfig.build(**TINY, out_dir=str(tmp_path / "cut"))
    whole = TrainConfig.build(**TINY, out_dir=str(tmp_path / "whole"))
    with pytest.raises(Interrupted, match="stopped at epoch 1, step 4"):
        with interruptible() as asked:
            run_training(cut, progress=False, ctx=SignalAtStep(asked, at=3, sig=sig))
    assert (tmp_path / "cut/latest.pt").exists() and not (tmp_path / "cut/result.json").exists()
    run_training(cut, resume=True, progress=False)
    run_training(whole, progress=False)
    mine, theirs = (load_checkpoint(f"{c.out_dir}/latest.pt").state_dict for c in (cut, whole))
    assert all(torch.equal(mine[k], theirs[k]) for k in mine)


def test_a_stop_not_asked_by_a_signal_stays_a_plain_stop(tmp_path: Path) -> None:
    from tgd_core.training import Interrupted, Stopped, TrainConfig, interruptible, run_training
    from tgd_core.training.stopping import StopWhen

    cfg = TrainConfig.build(**TINY, out_dir=str(tmp_path / "run"))
    with pytest.raises(Stopped) as stopped:
        with interruptible():
            run_training(cfg, progress=False, ctx=StopWhen(deadline=0.0))
    assert not isinstance(stopped.value, Interrupted)


def start_tgd(tmp_path: Path, *argv: str) -> subprocess.Popen:
    """``tgd ARGV`` in its own session (a signal to its group reaches only it and its
    children), stderr to ``tmp_path/stderr``."""
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    err = open(tmp_path / "stderr", "wb")  # noqa: SIM115 — the child holds it
    return subprocess.Popen([sys.executable, "-m", "tgd_core", *argv], stderr=err,
                            stdout=subprocess.DEVNULL, env=env, start_new_session=True)


def ended(proc: subprocess.Popen, tmp_path: Path) -> tuple[int, str]:
    """The exit status and stderr of ``proc``, once it ends (bounded against hangs only: then
    its whole group is killed, and the test fails)."""
    try:
        status = proc.wait(timeout=SLOW)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return status, (tmp_path / "stderr").read_text()


def test_tgd_train_stops_on_ctrl_c_with_latest_saved_and_resumes(tmp_path: Path) -> None:
    import json

    from tgd_core.core.fileio import folder_lock

    config = tmp_path / "config.json"
    config.write_text(json.dumps(ENDLESS))
    out = tmp_path / "run"
    proc = start_tgd(tmp_path, "train", "--config", str(config), "--out", str(out),
                     "--no-progress")
    wait_for(lambda: (out / "latest.pt").exists() or proc.poll() is not None,
             what="the first step's latest.pt")
    os.killpg(proc.pid, signal.SIGINT)
    status, err = ended(proc, tmp_path)
    assert status == 130, err
    assert "SIGINT: stopping every run at its next step" in err
    assert "stopped at epoch " in err and "with --resume continues" in err
    with folder_lock(out, "testing"):  # no process trains it any more
        pass
    assert (out / "latest.pt").exists() and not (out / "result.json").exists()


def test_a_parallel_experiment_stops_its_workers_on_sigint(tmp_path: Path) -> None:
    """``tgd experiment --parallel 2``, both teachers training in worker processes: SIGINT to
    the experiment's process alone (``kill -INT``; before, it waited for them to end) stops
    both at their next step with latest.pt saved (exit 130); the same command resumes them.
    Ctrl-C reaches the workers too: they ignore it (the next test)."""
    from tgd_core.core.fileio import folder_lock

    recipe = tmp_path / "endless.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "endless", "common": ENDLESS,
        "teachers": {"t1": {"student": "wrn16_1", "student_input": "raw"},
                     "t2": {"student": "wrn16_1", "student_input": "raw"}},
        "student": {"student": "wrn16_1"},
        "methods": {"mtkd": {"teachers": {"t1": "t1", "t2": "t2"}}}, "seeds": [0]}))
    out = tmp_path / "exp"
    cli = ["experiment", str(recipe), "--out", str(out), "--no-progress", "--parallel", "2"]
    teachers = [out / "teachers" / name for name in ("t1", "t2")]
    proc = start_tgd(tmp_path, *cli)
    wait_for(lambda: all((t / "latest.pt").exists() for t in teachers) or proc.poll() is not None,
             what="both teachers' first steps")
    proc.send_signal(signal.SIGINT)
    status, err = ended(proc, tmp_path)
    assert status == 130, err
    for name in ("t1", "t2"):
        assert f"[stopped] teacher {name}: stopped at epoch " in err, err
    assert "run the same command again to resume" in err and "mtkd" not in err
    for folder in teachers:
        with folder_lock(folder, "testing"):  # no worker trains it any more
            assert (folder / "latest.pt").exists() and not (folder / "result.json").exists()

    proc = start_tgd(tmp_path, *cli, "--stop-after", "1e-9")
    status, err = ended(proc, tmp_path)
    assert status == 3, err
    assert "[resume] teacher t1" in err and "[resume] teacher t2" in err


def busy_until(started: str, release: str) -> int:
    """A task for a worker: write its process id to ``started``, poll until ``release``
    exists, return the id (a KeyboardInterrupt meanwhile would end the task instead)."""
    Path(started).write_text(str(os.getpid()))
    wait_for(Path(release).exists, what="the test to release the task")
    return os.getpid()


def test_parallel_workers_ignore_ctrl_c_and_can_be_killed(tmp_path: Path) -> None:
    """A worker of ``--parallel`` ignores SIGINT in the middle of its task (its parent asks it
    to stop at a step boundary instead), and a second Ctrl-C kills the workers rather than wait
    for them."""
    import multiprocessing
    import time
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from tgd_core.experiments.runner import _kill_workers, _start_worker

    started, release = tmp_path / "started", tmp_path / "release"
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_start_worker,
                             initargs=(context.Event(),)) as pool:
        task = pool.submit(busy_until, str(started), str(release))
        wait_for(started.exists, what="the task to start")
        os.kill(int(started.read_text()), signal.SIGINT)
        release.touch()
        try:
            assert task.result(timeout=SLOW) == int(started.read_text())
        except KeyboardInterrupt:  # the worker's, raised here: it must not end this session
            pytest.fail("SIGINT interrupted the worker's task")
        sleeping = pool.submit(time.sleep, SLOW)
        _kill_workers(pool)
        with pytest.raises(BrokenProcessPool):
            sleeping.result(timeout=SLOW)


def test_ctrl_c_stops_a_serial_experiment_and_the_same_command_resumes(tmp_path: Path, capsys,
                                                                      monkeypatch) -> None:
    """``tgd experiment`` in one process: Ctrl-C during teacher t1's second step stops it at
    its next step with latest.pt saved and starts no other run (exit 130); the same command
    then resumes t1 and trains the rest."""
    from tgd_core.cli import main
    from tgd_core.training.stopping import StopWhen

    recipe = tmp_path / "serial.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "serial", "common": TINY,
        "teachers": {"t1": {"student": "wrn16_1", "student_input": "raw"}},
        "student": {"student": "wrn16_1"},
        "methods": {"kd": {"teachers": {"t1": "t1"}}}, "seeds": [0],
        "evaluation": {"split": "test_lossless_1k", "subset": 8, "corruption_subset": 8,
                       "corruptions": ["contrast"], "severities": [1], "noise_sigmas": []}}))
    polls = []
    should_stop = StopWhen.should_stop

    def ctrl_c_at_the_second_poll(self) -> bool:
        polls.append(1)
        if len(polls) == 2:
            signal.raise_signal(signal.SIGINT)
        return should_stop(self)

    monkeypatch.setattr(StopWhen, "should_stop", ctrl_c_at_the_second_poll)
    cli = ["experiment", str(recipe), "--out", str(tmp_path / "exp"), "--no-progress"]
    assert main(cli) == 130
    err = capsys.readouterr().err
    assert "[stopped] stopped at epoch 1, step 2; run the same command again" in err, err
    assert "kd seed 0" not in err
    assert (tmp_path / "exp/teachers/t1/latest.pt").exists()
    monkeypatch.setattr(StopWhen, "should_stop", should_stop)
    assert main(cli) == 0
    err = capsys.readouterr().err
    assert "[resume] teacher t1" in err and "[done] kd seed 0" in err
