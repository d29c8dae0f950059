"""``tgd evaluate``: accuracy, NLL and ECE of a checkpoint on CIFAR-10, clean or corrupted.

Accepts our checkpoints and the TGD authors' files alike (:mod:`tgd_core.nets.checkpoints`); raw
images are normalised with the checkpoint's own statistics, and PI networks read the PIs of the
(clean or corrupted) images, computed on the fly with the representation they were trained on.
``--sweep`` evaluates every CIFAR-10-C corruption at severities 1–5 (plus clean and optional
noise σ rows) and writes the
table with ``--output`` (.csv or .json). JSON output is strict: a non-finite metric is ``null``;
a checkpoint with NaN or infinite weights is refused (one line, exit 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tgd_core.commands import check_output_folder
from tgd_core.core.errors import TGDError
from tgd_core.core.fileio import json_text
from tgd_core.data.datasets import CIFAR10_SPLITS, DATASETS, dataset_splits

# the corruption names and severities, without importing the (numpy/scipy/PIL) corruption code
CORRUPTION_NAMES = ("brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost",
                    "gaussian_blur", "gaussian_noise", "glass_blur", "impulse_noise",
                    "jpeg_compression", "motion_blur", "pixelate", "saturate", "shot_noise", "snow",
                    "spatter", "speckle_noise", "zoom_blur")
CORRUPTION_GROUPS = ("all", "standard", "extra", "method", "noise", "blur", "weather", "digital")
SEVERITY_LEVELS = (1, 2, 3, 4, 5)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate a checkpoint (accuracy, NLL, ECE)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="our .pt file or an authors' .pth.tar")
    p.add_argument("--dataset", default="cifar10", choices=DATASETS)
    p.add_argument("--split", default="test",
                   help=f"cifar10: {', '.join(CIFAR10_SPLITS)}; cinic10 and imagefolder: "
                        "train, valid, test")
    p.add_argument("--data-dir", default=None,
                   help="folder holding cifar10/ (default: TGD_DATA_DIR)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N images")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--corruption", choices=CORRUPTION_NAMES, help="CIFAR-10-C corruption")
    mode.add_argument("--noise-sigma", type=float, default=None,
                      help="additive Gaussian noise σ on [0, 1] pixels, clipped")
    mode.add_argument("--sweep", action="store_true",
                      help="all corruptions × severities 1–5 (plus clean and --sweep-sigmas)")
    p.add_argument("--severity", type=int, choices=SEVERITY_LEVELS, help="with --corruption")
    p.add_argument("--sweep-corruptions", nargs="+", default=["all"],
                   choices=CORRUPTION_GROUPS + CORRUPTION_NAMES, metavar="NAME",
                   help="with --sweep: corruptions or groups (all, standard, extra, method, noise, "
                        "blur, weather, digital; default all)")
    p.add_argument("--sweep-sigmas", type=float, nargs="*", default=(),
                   help="with --sweep: additive-noise σ values to add as rows")
    p.add_argument("--output", default=None, help="with --sweep: write the table (.csv or .json)")
    p.add_argument("--seed", type=int, default=0, help="seed of the corruption noise")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference")
    p.add_argument("--device", default="cpu", help="auto, cpu, cuda[:N] or mps (default cpu)")
    p.add_argument("--reliability", action="store_true",
                   help="include the 15-bin reliability-diagram data in the output")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run)


def _check_args(args: argparse.Namespace) -> None:
    if args.corruption and args.severity is None:
        raise TGDError("--corruption needs --severity 1..5")
    if args.severity is not None and not args.corruption:
        raise TGDError("--severity needs --corruption")
    if (args.sweep_sigmas or args.output) and not args.sweep:
        raise TGDError("--sweep-sigmas and --output need --sweep")
    if args.limit is not None and args.limit < 1:
        raise TGDError(f"--limit must be >= 1, got {args.limit}")
    if args.output:
        from tgd_core.evaluation.metrics import check_table_path

        check_table_path(args.output)
        check_output_folder(Path(args.output).parent)


def run(args: argparse.Namespace) -> int:
    from tgd_core.core.devices import select_device
    from tgd_core.evaluation.metrics import model_input_transform

    _check_args(args)
    ckpt, images, labels = _checkpoint_and_data(args)
    device = select_device(args.device)
    model = ckpt.build(device)
    inference = dict(batch_size=args.batch_size, num_threads=args.threads, device=device,
                     progress=None, transform=model_input_transform(ckpt.input_kind, ckpt.config))
    if args.sweep:
        _sweep(args, model, images, labels, ckpt.normalization, inference)
    else:
        _one_condition(args, ckpt, model, images, labels, inference)
    return 0


def _checkpoint_and_data(args: argparse.Namespace):
    """The checkpoint and the split's images and labels, checked against each other."""
    from tgd_core.data.datasets import load_dataset
    from tgd_core.nets.checkpoints import load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    if args.split not in dataset_splits(args.dataset):
        raise TGDError(f"--split {args.split!r} is not a split of {args.dataset}: "
                       f"{', '.join(dataset_splits(args.dataset))}")
    images, labels = load_dataset(args.dataset, args.split, args.data_dir, limit=args.limit)
    if int(labels.max()) >= ckpt.num_classes:
        raise TGDError(f"{args.checkpoint}: model has {ckpt.num_classes} classes, "
                       f"{args.dataset} has at least {int(labels.max()) + 1}")
    return ckpt, images, labels


def _sweep(args, model, images, labels, normalization, inference) -> None:
    """``--sweep``: every corruption × severity (and noise σ) row, printed and/or written."""
    from tgd_core.data.corruptions import corruption_set
    from tgd_core.evaluation.metrics import robustness_sweep, write_table

    rows = robustness_sweep(model, images, labels, normalization,
                            corruptions=corruption_set(args.sweep_corruptions),
                            noise_sigmas=args.sweep_sigmas, seed=args.seed, **inference)
    if args.output:
        write_table(rows, args.output)
    if args.json:
        print(json_text(rows))
        return
    print(f"{'corruption':<22}{'severity':>9}{'sigma':>8}{'accuracy':>10}"
          f"{'nll':>9}{'ece':>9}{'n':>7}")
    for r in rows:
        sigma = "" if r["sigma"] is None else f"{r['sigma']:g}"
        severity = "" if r["severity"] is None else r["severity"]
        print(f"{r['corruption']:<22}{severity:>9}{sigma:>8}{r['accuracy']:>10.2f}"
              f"{r['nll']:>9.4f}{r['ece']:>9.4f}{r['n']:>7}")


def _one_condition(args, ckpt, model, images, labels, inference) -> None:
    """Clean, one corruption at one severity, or Gaussian noise: one result, printed."""
    from tgd_core.data.corruptions import add_gaussian_noise, corrupt
    from tgd_core.evaluation.metrics import evaluate_model

    if args.corruption:
        images = corrupt(images, args.corruption, args.severity, seed=args.seed)
        condition = f"{args.corruption} severity {args.severity}"
    elif args.noise_sigma is not None:
        images = add_gaussian_noise(images, args.noise_sigma, seed=args.seed)
        condition = f"gaussian noise sigma {args.noise_sigma:g}"
    else:
        condition = "clean"
    result = evaluate_model(model, images, labels, ckpt.normalization, **inference)
    if args.json:
        print(json_text(result.to_dict() if args.reliability else result.summary()))
        return
    print(f"{args.checkpoint} ({ckpt.model}, {ckpt.source}, epoch {ckpt.epoch}) on "
          f"{args.split} [{condition}]: accuracy {result.accuracy:.2f} %  nll {result.nll:.4f}  "
          f"ece {result.ece:.4f}  n {result.n}")
    if args.reliability:
        print(f"{'bin':<14}{'count':>7}{'confidence':>12}{'accuracy':>10}")
        for b in result.reliability:
            conf = "" if b.confidence is None else f"{b.confidence:.4f}"
            acc = "" if b.accuracy is None else f"{b.accuracy:.4f}"
            print(f"({b.lower:.3f}, {b.upper:.3f}]{b.count:>7}{conf:>12}{acc:>10}")
