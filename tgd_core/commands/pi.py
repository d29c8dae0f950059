"""``tgd pi``: persistence images of images (to an .npz) or of a dataset split (to the cache)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from tgd_core.commands import check_output_file, write_error
from tgd_core.core.errors import TGDError
from tgd_core.topology import schema


def register(sub) -> None:
    p = sub.add_parser(
        "pi", help="persistence images of images or of a dataset split",
        description="Compute persistence images. Either --input IMAGES --out OUT.npz, or "
                    "--dataset cifar10 --split SPLIT to fill the dataset PI cache.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help=".npy of uint8 N×H×W×3 images, an image file or a folder")
    src.add_argument("--dataset", choices=["cifar10"], help="fill the PI cache of a dataset")
    p.add_argument("--out", help="output .npz (with --input)")
    p.add_argument("--split", default="train", help="dataset split: train, test, test_lossless_1k")
    p.add_argument("--shard", help="i/n: compute only the i-th (0-based) of n row ranges")
    p.add_argument("--workers", type=int, default=1, help="processes (1 = threads in this one)")
    p.add_argument("--cache-dir", help="cache root (default: $TGD_STATE_DIR/cache)")
    p.add_argument("--data-dir", help="dataset root (default: $TGD_DATA_DIR or ../shared/data)")
    p.add_argument("--mode", choices=list(schema.MODES), default="paper",
                   help="paper: the authors' 1-D row/column H0 PIs; cubical: 2-D H0/H1 PIs")
    add_pi_arguments(p)
    p.set_defaults(func=run)


#: Help groups of the PI flags: mode → title (cubical mode reads the cubical and image sections).
FLAG_GROUPS = {"paper": "paper mode (the authors' PIs)",
               "cubical": "cubical mode (2-D H0/H1, gudhi semantics)"}


def add_pi_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per parameter of :data:`tgd_core.topology.schema.PARAMETERS` that has one,
    grouped by mode, with the schema's default, choices and help."""
    for mode, title in FLAG_GROUPS.items():
        group = parser.add_argument_group(title)
        for section in schema.MODES[mode]:
            for param in schema.parameters(section):
                if param.flag:
                    group.add_argument(param.flag, help=param.flag_help, **_flag_options(param))


def _flag_options(param: schema.Param) -> dict:
    """argparse options of a parameter: a switch for a negated bool, one number per side for
    pixel pairs, two numbers for ranges, one or more values for subsets (checked by the
    config, as any value)."""
    if param.negated:
        return {"action": "store_true"}
    options = {"type": param.type, "default": param.default}
    if param.choices and param.shape == "scalar":
        options["choices"] = list(param.choices)
    if param.shape == "per_side":
        options["default"] = param.default[0]
    elif param.shape == "range":
        options.update(nargs=2, default=list(param.default))
    elif param.shape == "subset":
        options.update(nargs="+", default=list(param.default))
    return options


def representation_from_args(args):
    """The representation the ``--mode`` and PI flags describe."""
    from tgd_core.topology.representation import representation_from_values

    values = {}
    for param in schema.PARAMETERS:
        if param.flag:
            value = getattr(args, param.dest)
            values[param.key] = not value if param.negated else value
    return representation_from_values(args.mode, values)


def run(args) -> int:
    rep = representation_from_args(args)
    if args.input:
        return _run_images(args, rep)
    return _run_dataset(args, rep)


def npz_path(out: str) -> str:
    """Where ``--out`` writes: the name as given, with ``.npz`` added if it lacks it (as
    ``numpy.savez`` does)."""
    return out if out.endswith(".npz") else out + ".npz"


def _run_images(args, rep) -> int:
    from tgd_core.core.fileio import atomic_write
    from tgd_core.data.images import load_images
    from tgd_core.topology.representation import compute_pis

    if not args.out:
        raise TGDError("--out OUT.npz is required with --input")
    out = npz_path(args.out)
    check_output_file(out)
    images, names = load_images(args.input)
    t0 = time.perf_counter()
    raw, u8 = compute_pis(images, rep)
    dt = time.perf_counter() - t0
    try:
        atomic_write(out, lambda f: np.savez_compressed(
            f, pi_raw=raw.astype(np.float32), pi_uint8=u8, names=np.asarray(names),
            config=json.dumps(rep.to_dict())))
    except OSError as exc:
        raise write_error(out, exc) from None
    print(f"{len(names)} image(s) -> {out}: pi_raw {raw.shape} float32, pi_uint8 "
          f"({dt:.3f} s)", file=sys.stderr)
    return 0


def _run_dataset(args, rep) -> int:
    from tqdm import tqdm

    from tgd_core.data.datasets import load_cifar10
    from tgd_core.topology.cache import PICache, parse_shard

    shard = parse_shard(args.shard)
    images, _ = load_cifar10(args.split, args.data_dir)
    entry = PICache.for_images(images, rep, args.dataset, args.split, args.cache_dir)
    todo = sum(b - a for a, b in entry.missing(shard))
    t0 = time.perf_counter()
    with tqdm(total=todo, unit="img", desc=f"PIs {args.dataset}/{args.split}") as bar:
        entry.fill(images, rep, shard=shard, workers=max(1, args.workers), progress=bar.update)
    dt = time.perf_counter() - t0
    rate = f", {todo / dt:,.0f} images/s" if todo else " (already cached)"
    state = "complete" if entry.complete() else "partial (other shards pending)"
    print(f"{todo} image(s) computed in {dt:.1f} s{rate}; cache {state}: {entry.root}",
          file=sys.stderr)
    if entry.complete():
        arr = entry.load()
        print(f"{entry.root}: {arr.shape} uint8 PIs", file=sys.stderr)
    return 0
