"""Are the uint8 PIs of ``summation="grouped"`` those of the bitwise (persim) path on CIFAR-10?

    .venv/bin/python benchmarks/check_grouped_uint8.py [--splits train test test_lossless_1k]
        [--batch 5000]

Computes the paper-mode uint8 PIs of every image of each split both ways (through the public
API ``paper_persistence_images``, default parameters) and prints, per split and in total, how
many PI pixels and how many images differ. The bitwise path equals ripser + persim, so zero
differences mean the grouped uint8 PIs are the authors' on these images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tgd_core.data.datasets import load_cifar10  # noqa: E402
from tgd_core.topology import paper_persistence_images  # noqa: E402


def differences(images: np.ndarray, batch: int) -> tuple[int, int]:
    """(differing PI pixels, images with any differing pixel) between the two summations."""
    pixels = n_images = 0
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        _, exact = paper_persistence_images(part, raw=False)
        _, grouped = paper_persistence_images(part, raw=False, summation="grouped")
        differ = grouped != exact
        pixels += int(differ.sum())
        n_images += int(differ.reshape(len(part), -1).any(axis=1).sum())
    return pixels, n_images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", nargs="+", default=["train", "test", "test_lossless_1k"])
    ap.add_argument("--batch", type=int, default=5000, help="images per call")
    args = ap.parse_args()
    total_images = total_pixels = total_differing = 0
    t0 = time.perf_counter()
    for split in args.splits:
        images, _ = load_cifar10(split)
        pixels, n_images = differences(images, args.batch)
        print(f"{split}: {len(images):,} images, {pixels:,} differing uint8 PI pixels in "
              f"{n_images:,} images")
        total_images += len(images)
        total_pixels += pixels
        total_differing += n_images
    print(f"total: {total_images:,} images, {total_pixels:,} differing uint8 PI pixels in "
          f"{total_differing:,} images ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
