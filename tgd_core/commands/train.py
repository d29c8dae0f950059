"""``tgd train`` and ``tgd distill``: train a network (CE) or distil a student, resumably.

Both build one :class:`~tgd_core.training.TrainConfig` from a JSON config (``--config``), the
command's flags and ``--set key=value`` overrides (in that order), and run
:func:`~tgd_core.training.run_training`. Ctrl-C (or SIGTERM) stops at the next step boundary with
``latest.pt`` saved and exits 130: ``--resume`` continues; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tgd_core.commands import apply_assignments, check_output_folder, read_json_object
from tgd_core.data.datasets import DATASETS

SCHEDULES = ("step", "cosine", "onecycle")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--dataset", default=None, choices=DATASETS,
                   help="cifar10; cinic10 (<data-dir>/cinic10); imagefolder "
                        "(<data-dir>/{train,valid,test}/<class>/)")
    p.add_argument("--data-dir")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--milestones", type=int, nargs="*")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="random crop + flip (raw inputs)")
    p.add_argument("--train-subset", type=int, help="first N training images")
    p.add_argument("--test-subset", type=int, help="first N test images")
    p.add_argument("--test-split", choices=["test", "test_lossless_1k", "train"])
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto, cpu, cuda[:N], mps")
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="bfloat16 autocast")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--checkpoint-every-steps", type=int)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any config field (VALUE parsed as JSON when it can be; a dotted KEY "
                        "sets a nested field, e.g. pi.mode=cubical)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(sub) -> None:
    t = sub.add_parser("train", help="train a teacher or a scratch student (cross-entropy)",
                       description="Train a network with cross-entropy on raw images or PIs.")
    t.add_argument("--model", help="registry name, e.g. wrn16_3")
    t.add_argument("--input", choices=["raw", "pi"], help="raw images or persistence images")
    t.add_argument("--pi-mode", choices=["paper", "cubical"], help="PI representation")
    _common(t)
    t.set_defaults(func=run_train)

    d = sub.add_parser("distill", help="distil a student from teachers (TGD and baselines)",
                       description="Distil a student with one of the registered methods.")
    d.add_argument("--method", help="tgd, kd, mtkd, at, sp, fitnet, scratch")
    d.add_argument("--student", help="student model, e.g. wrn16_1")
    d.add_argument("--teacher1", help="checkpoint of teacher 1 (raw images)")
    d.add_argument("--teacher2", help="checkpoint of teacher 2 (persistence images)")
    d.add_argument("--init-student", help="checkpoint to start the student from (annealing)")
    d.add_argument("--alpha", type=float)
    d.add_argument("--beta", type=float)
    d.add_argument("--temperature", type=float)
    d.add_argument("--lambda-kd", type=float, dest="lambda_kd")
    d.add_argument("--compat", action=argparse.BooleanOptionalAction, default=None,
                   help="the authors' loss to the letter")
    _common(d)
    d.set_defaults(func=run_distill)


def _values(args, mapping: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, attr) for attr, field in mapping.items()
            if getattr(args, attr, None) is not None}


COMMON = {"dataset": "dataset", "data_dir": "data_dir", "epochs": "epochs",
          "batch_size": "batch_size", "lr": "lr", "schedule": "schedule",
          "milestones": "milestones", "augment": "augment", "train_subset": "train_subset",
          "test_subset": "test_subset", "test_split": "test_split", "seed": "seed",
          "device": "device", "threads": "threads", "amp": "amp",
          "channels_last": "channels_last", "checkpoint_every_steps": "checkpoint_every_steps"}


def build_config(args, own: dict[str, Any], default_name: str,
                 defaults: dict[str, Any] | None = None):
    """The run's TrainConfig: ``defaults``, then the ``--config`` file (resuming without one:
    the run's own ``config.json``, so ``--out DIR --resume`` alone continues it), then flags,
    then ``--set``, then ``--out``."""
    from tgd_core.training import TrainConfig

    out = args.out or f"runs/{default_name}"
    base = read_json_object(args.config) if args.config else _saved_config(args, out)
    values = apply_assignments({**(defaults or {}), **base, **_values(args, COMMON), **own},
                               args.set)
    values["out_dir"] = out
    return TrainConfig.build(**values)


def _saved_config(args, out: str) -> dict[str, Any]:
    """With ``--resume``, the config the run in ``out`` saved (none yet: empty)."""
    saved = Path(out) / "config.json"
    return read_json_object(saved) if args.resume and saved.is_file() else {}


def _run(cfg, args) -> int:
    """Train ``cfg``; Ctrl-C or SIGTERM stops at the next step with ``latest.pt`` saved
    (exit 130; ``--resume`` continues), a second Ctrl-C at once."""
    from tgd_core.cli import INTERRUPTED
    from tgd_core.core.distributed import current
    from tgd_core.training import Interrupted, run_training
    from tgd_core.training.stopping import StopWhen, interruptible

    check_output_folder(cfg.out_dir)
    try:
        with interruptible() as asked:
            result = run_training(cfg, resume=args.resume, ctx=StopWhen(asked=asked),
                                  progress=False if args.no_progress else True)
    except Interrupted as exc:
        if current().is_main:
            print(f"tgd: {args.command}: {exc}; {cfg.out_dir}/latest.pt saved: the same command "
                  "with --resume continues", file=sys.stderr)
        return INTERRUPTED
    if not current().is_main:  # under torchrun, rank 0 reports
        return 0
    best, last = result["best"] or {}, result["last"] or {}
    print(f"{cfg.out_dir}: best test accuracy {best.get('test_accuracy', float('nan')):.2f} % "
          f"(epoch {result['best_epoch']}), last {last.get('test_accuracy', float('nan')):.2f} %",
          file=sys.stderr)
    print(json.dumps({"out_dir": cfg.out_dir, **result}))
    return 0


def run_train(args) -> int:
    own = _values(args, {"model": "student", "input": "student_input"})
    if args.pi_mode:
        own["pi"] = {"mode": args.pi_mode}
    name = f"{own.get('student', 'wrn16_1')}-{own.get('student_input', 'raw')}"
    return _run(build_config(args, {"method": "scratch", **own}, name), args)


def run_distill(args) -> int:
    own = _values(args, {"method": "method", "student": "student",
                         "init_student": "init_student"})
    teachers = {role: path for role, path in (("t1", args.teacher1), ("t2", args.teacher2))
                if path}
    if teachers:
        own["teachers"] = teachers
    params = _values(args, {"alpha": "alpha", "beta": "beta", "temperature": "temperature",
                            "lambda_kd": "lambda_kd", "compat": "compat"})
    if params:
        own["method_params"] = params
    name = f"{own.get('method', 'tgd')}-{own.get('student', 'wrn16_1')}"
    return _run(build_config(args, own, name, defaults={"method": "tgd"}), args)
