"""``tgd export``: a checkpoint as a self-contained ONNX or TorchScript model, validated.

The exported model reads float N×C×H×W inputs in [0, 1] (images, or the PI stack of a PI
network), normalises them inside and returns logits; ``FILE.json`` beside it describes the
input, classes, source and the validation (max |Δ logit| against PyTorch eager on 64 CIFAR-10
test images, or seeded random images without the data). See :mod:`tgd_core.nets.export`.
"""

from __future__ import annotations

import argparse

# mirrors tgd_core.nets.export.FORMATS / DEFAULT_ATOL without importing torch at start-up
FORMATS = ("onnx", "torchscript")
DEFAULT_ATOL = 1e-4


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX or TorchScript",
                              description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="our .pt file or an authors' .pth.tar")
    p.add_argument("--format", default="onnx", choices=FORMATS, help="default: onnx")
    p.add_argument("--out", required=True, help="file to write (its sidecar: OUT.json)")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                   help="largest max |Δ logit| accepted against PyTorch "
                        f"(default {DEFAULT_ATOL:g})")
    p.add_argument("--data-dir", default=None,
                   help="folder holding cifar10/ for the validation images "
                        "(default: TGD_DATA_DIR)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the validation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tgd_core.nets.export import export_checkpoint

    result = export_checkpoint(args.checkpoint, args.out, args.format, atol=args.atol,
                               data_dir=args.data_dir, num_threads=args.threads)
    print(result.summary())
    return 0
