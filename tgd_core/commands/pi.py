"""``tgd pi``: persistence images of images (to an .npz) or of a dataset split (to the cache)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from tgd_core.commands import check_output_file, write_error
from tgd_core.core import fileio
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
    p.add_argument("--raw", choices=["float64", "float32", "none"], default="float64",
                   help="dtype of pi_raw in OUT.npz, or none for no pi_raw (pi_uint8 only). "
                        "float32 halves the file but flushes PIs whose maximum is below "
                        "1.2e-38 to zero (about 0.7%% of CIFAR paper PIs), which pi_uint8 "
                        "shows at full contrast")
    p.add_argument("--compress", action="store_true",
                   help="deflate OUT.npz (smaller, but several times slower to write)")
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
    ``numpy.savez`` does). A device or FIFO given as ``--out`` is refused, not made the folder
    of a new file (``/dev/null`` → ``/dev/null.npz``)."""
    if not Path(out).is_dir():
        fileio.check_replaceable(out)
    return out if out.endswith(".npz") else out + ".npz"


#: Images per chunk: PIs are computed and written this many at a time, so memory stays bounded
#: (about 60 MB of float64 paper PIs at the default 50×50, two chunks held) whatever the input
#: size. 512 paper-mode uint8 PIs are a whole number of 4 KiB blocks, as writes around the
#: page cache need (tgd_core/topology/pi_file.py).
CHUNK_IMAGES = 512


def _run_images(args, rep) -> int:
    from tgd_core.topology.pi_file import RAW_DTYPES

    if not args.out:
        raise TGDError("--out OUT.npz is required with --input")
    out = npz_path(args.out)
    check_output_file(out)
    images, names = open_images(args.input)
    raw_dtype = RAW_DTYPES[args.raw]
    pi_shape = _pi_shape(rep, images)
    park = fileio.temp_path(out, "pi_uint8")
    t0 = time.perf_counter()
    try:
        fileio.atomic_write(out, lambda f: _stream_pis(
            f, images, names, rep, pi_shape, raw_dtype=raw_dtype, compress=args.compress,
            park_path=park))
    except OSError as exc:
        raise write_error(out, exc) from None
    dt = time.perf_counter() - t0  # PIs and file, end to end
    raw_text = f"pi_raw {(len(names), *pi_shape)} {args.raw}, " if raw_dtype else ""
    print(f"{len(names)} image(s) -> {out}: {raw_text}pi_uint8 "
          f"({dt:.3f} s, {len(names) / dt:,.0f} images/s)", file=sys.stderr)
    return 0


def open_images(path: str):
    """``(images, names)`` of ``--input``: a uint8 N×H×W×C ``.npy`` is memory-mapped (read
    chunk by chunk as the PIs need it, never whole); anything else is loaded as
    :func:`tgd_core.data.images.load_images` does."""
    from tgd_core.data.images import as_image_batch, load_images

    if str(path).lower().endswith(".npy") and os.path.isfile(path):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:  # EOFError: a zero-byte file
            raise TGDError(f"{path}: not a readable .npy array ({exc})") from None
        if arr.ndim == 4 and arr.dtype == np.uint8 and len(arr):
            as_image_batch(arr[:1], channels=None, name=str(path))  # shape checks only
            return arr, [str(i) for i in range(len(arr))]
    return load_images(path)


def pi_chunks(images, rep, *, raw: bool, chunk: int | None = None):
    """Yield ``(pi_raw, pi_uint8)`` of ``images`` (an array or a list) ``chunk`` images at a
    time (default :data:`CHUNK_IMAGES`), in order; ``pi_raw`` may be None when ``raw`` is
    False. Paper-mode PIs of an array are written into two sets of buffers in turn (fresh
    pages for every chunk cost a fifth of a float64 run zeroing them), block-aligned for
    writes around the page cache (:class:`~tgd_core.topology.pi_file.DirectFile`): a chunk's
    arrays are overwritten two chunks later, so use or copy each before asking for the one
    after next."""
    from tgd_core.topology.paper import PaperPIConfig, paper_persistence_images
    from tgd_core.topology.pi_file import aligned_empty
    from tgd_core.topology.representation import compute_pis

    chunk = chunk or CHUNK_IMAGES
    buffers = []
    for number, start in enumerate(range(0, len(images), chunk)):
        part = images[start:start + chunk]
        if not (isinstance(rep, PaperPIConfig) and isinstance(images, np.ndarray)):
            yield compute_pis(part, rep, raw=raw)
            continue
        if len(buffers) < 2:
            shape = (min(chunk, len(images)), *_pi_shape(rep, images))
            buffers.append((aligned_empty(shape, np.float64) if raw else None,
                            aligned_empty(shape, np.uint8)))
        pi_raw, pi_u8 = buffers[number % 2]
        yield paper_persistence_images(part, rep, raw=raw, out=(
            None if pi_raw is None else pi_raw[:len(part)], pi_u8[:len(part)]))


def _pi_shape(rep, images) -> tuple:
    """Shape of one image's PIs (channels×rows×cols), from the PIs of the first image."""
    from tgd_core.topology.representation import compute_pis

    return compute_pis(images[:1], rep, raw=False)[1].shape[1:]


def _stream_pis(f, images, names, rep, pi_shape: tuple, *, raw_dtype, compress: bool,
                park_path) -> None:
    """Compute the PIs (each ``pi_shape``) of ``images`` chunk by chunk and stream them into
    the npz file ``f``, with a progress bar on stderr (when it is a terminal). Each chunk is
    written by a thread while the next one is computed (the PI kernel and file writes release
    the GIL), so at most two chunks are held at once."""
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from tgd_core.topology.pi_file import PIFileWriter

    with tqdm(total=len(names), unit="img", desc="PIs", disable=None) as bar, \
            PIFileWriter(f, len(names), pi_shape, raw_dtype=raw_dtype,
                         compress=compress, park_path=park_path) as writer, \
            ThreadPoolExecutor(1, thread_name_prefix="pi-writer") as pool:
        writing = None
        for pi_raw, pi_u8 in pi_chunks(images, rep, raw=raw_dtype is not None):
            if writing is not None:
                writing.result()
            writing = pool.submit(writer.add, pi_raw, pi_u8)
            bar.update(len(pi_u8))
        if writing is not None:
            writing.result()
        writer.finish(names, rep.to_dict())


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
