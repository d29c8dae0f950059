"""Training data held as tensors: raw images and PI stacks (uint8) and labels, on the device.

Batches are deterministic functions of (seed, epoch, step): the order of an epoch is a
permutation drawn from a generator seeded with (seed, epoch), and the augmentation of a step
from one seeded with (seed, epoch, step). A run resumed at any step therefore sees exactly the
batches an uninterrupted run sees. With ``pi_on_the_fly`` the PI input of a training batch is
computed from the same augmented views the raw networks see (crop and flip act on uint8
pixels, so the views are exact images and their PIs are the engine's PIs of those images).
Inputs leave as float N×C×H×W in [0, 1]; each network applies its own normalisation
(:mod:`tgd_core.distill.base`). In a distributed run each rank takes its shard of every batch.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from tgd_core.core.distributed import SINGLE, DistContext
from tgd_core.core.errors import TGDError
from tgd_core.data.datasets import dataset_classes, load_dataset
from tgd_core.data.normalization import CIFAR10_PI, CIFAR10_RAW, Normalization
from tgd_core.topology import PaperPIConfig
from tgd_core.topology.cache import cached_pis
from tgd_core.topology.representation import compute_pis, representation_from_dict
from tgd_core.training.config import TrainConfig


@dataclass
class TrainBatch:
    """One training step's inputs: ``idx`` are this rank's samples of batch ``batch``."""

    step: int
    batch: int
    idx: torch.Tensor
    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    global_size: int  # samples in the global batch (all ranks)


@dataclass
class Split:
    labels: torch.Tensor  # int64 N
    raw: torch.Tensor | None = None  # uint8 N×3×H×W
    pi: torch.Tensor | None = None  # uint8 N×K×R×C

    def __len__(self) -> int:
        return len(self.labels)


def _generator(*seed_parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence(list(seed_parts)).generate_state(1)[0])
    return torch.Generator().manual_seed(seed)


def pi_normalization(train_pis: np.ndarray) -> Normalization:
    """Per-channel mean/std of uint8 training PIs scaled to [0, 1] (every setting but the
    authors' — paper-mode PIs of CIFAR-10 — whose published statistics are used)."""
    x = train_pis.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), 1e-6)
    return Normalization(tuple(mean.tolist()), tuple(std.tolist()))


def raw_normalization(images: np.ndarray) -> Normalization:
    """Per-channel mean/std of uint8 training images scaled to [0, 1] (datasets other than
    CIFAR-10, whose reference statistics are used as the authors do)."""
    x = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return Normalization(tuple(x.mean(0).tolist()), tuple(np.maximum(x.std(0), 1e-6).tolist()))


T = TypeVar("T")
ON_THE_FLY_CHUNK = 16  # training steps whose on-the-fly PIs are computed in one call


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """``items`` produced up to ``depth`` ahead by a background thread — the next batch (and its
    on-the-fly PIs, computed by compiled kernels that release the GIL) is made while the current
    step runs. Batches are functions of (seed, epoch, step), so results are unchanged; an
    exception in the producer is raised in the consumer."""
    slots: queue.Queue = queue.Queue(maxsize=depth)
    finished = threading.Event()
    end = object()

    def produce() -> None:
        try:
            for item in items:
                if finished.is_set():
                    return
                slots.put((item, None))
            slots.put((end, None))
        except BaseException as exc:  # noqa: BLE001 — handed to the consumer
            slots.put((end, exc))

    worker = threading.Thread(target=produce, name="tgd-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = slots.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        finished.set()
        while worker.is_alive():  # unblock a producer waiting for a free slot
            try:
                slots.get(timeout=0.01)
            except queue.Empty:
                pass
        worker.join()


CropFlip = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # row offsets, column offsets, flips


def draw_crop_flip(n: int, gen: torch.Generator, pad: int = 4) -> CropFlip:
    """Random crop offsets into the ``pad``-padded images and horizontal flips (p = 0.5) of
    ``n`` images; drawn for a whole (global) batch so that any shard of it sees the same."""
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    return oy, ox, torch.rand(n, generator=gen) < 0.5


def apply_crop_flip(x: torch.Tensor, params: CropFlip, pad: int = 4) -> torch.Tensor:
    """The crops and flips ``params`` of the zero-padded batch ``x`` (N×C×H×W, any dtype), on
    ``x``'s device (the parameters may live on the CPU or on that device)."""
    oy, ox, flip = (p.to(x.device) for p in params)  # no copy when already there
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = oy[:, None] + torch.arange(h, device=x.device)[None]
    cols = ox[:, None] + torch.arange(w, device=x.device)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[idx_n, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded batch (``pad`` pixels) and horizontal flips (p = 0.5)."""
    return apply_crop_flip(x, draw_crop_flip(len(x), gen, pad), pad)


class TrainData:
    """Train and test splits with the input kinds the networks need."""

    def __init__(self, cfg: TrainConfig, kinds: set[str], device: torch.device,
                 progress=None) -> None:
        if cfg.augment and "pi" in kinds and not cfg.pi_on_the_fly:
            raise TGDError("augment: the PI input of an augmented view needs on-the-fly PIs; "
                           "set pi_on_the_fly (or train PI networks without augmentation)")
        self.cfg, self.kinds, self.device = cfg, kinds, device
        self.on_the_fly = cfg.pi_on_the_fly and "pi" in kinds
        self.rep = representation_from_dict(cfg.pi) if "pi" in kinds else None
        train_x, train_y = load_dataset(cfg.dataset, "train", cfg.data_dir, cfg.train_subset)
        test_x, test_y = load_dataset(cfg.dataset, cfg.test_split, cfg.data_dir, cfg.test_subset)
        self.num_classes = dataset_classes(cfg.dataset, cfg.data_dir)
        self.normalizations: dict[str, Normalization] = {
            "raw": CIFAR10_RAW if cfg.dataset == "cifar10" else raw_normalization(train_x)}
        train_pi = test_pi = None
        if "pi" in kinds:
            rep = self.rep
            reference = cfg.dataset == "cifar10" and rep == PaperPIConfig()
            if not (self.on_the_fly and reference):  # else the training PIs are never read
                train_pi = cached_pis(train_x, rep, cfg.dataset, "train", progress=progress)
            test_pi = cached_pis(test_x, rep, cfg.dataset, cfg.test_split, progress=progress)
            self.normalizations["pi"] = CIFAR10_PI if reference else pi_normalization(train_pi)
        # on the fly, training PIs come from the (augmented) raw views: keep the raw images
        self.train = self._split(train_x, train_y, None if self.on_the_fly else train_pi,
                                 keep_raw=self.on_the_fly)
        self.test = self._split(test_x, test_y, test_pi)

    @classmethod
    def from_splits(cls, cfg: TrainConfig, train: Split, test: Split,
                    normalizations: dict[str, Normalization], num_classes: int) -> TrainData:
        """Data already held as splits on their device (e.g. synthetic images for
        ``benchmarks/bench_gpu.py``), instead of the dataset ``cfg`` names; no on-the-fly PIs."""
        data = cls.__new__(cls)
        data.cfg, data.device = cfg, train.labels.device
        data.kinds = {k for k in ("raw", "pi") if getattr(train, k) is not None}
        data.on_the_fly, data.rep = False, None
        data.train, data.test = train, test
        data.normalizations, data.num_classes = normalizations, num_classes
        return data

    def _split(self, images: np.ndarray, labels: np.ndarray, pis: np.ndarray | None,
               keep_raw: bool = False) -> Split:
        to = dict(device=self.device)
        raw = None
        if "raw" in self.kinds or keep_raw:
            raw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(**to)
        pi = torch.from_numpy(np.ascontiguousarray(pis)).to(**to) if pis is not None else None
        return Split(torch.from_numpy(labels).to(**to), raw, pi)

    def steps_per_epoch(self) -> int:
        return -(-len(self.train) // self.cfg.batch_size)

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, list[int]]:
        """(sample order, batch id of each step) of ``epoch``: batch ``b`` holds
        ``order[b * batch_size:(b + 1) * batch_size]``. Each epoch draws a new permutation;
        with ``fixed_batches`` the batches' composition is drawn once and only their order
        changes (so per-batch teacher targets, e.g. similarity maps, can be cached)."""
        n, steps = len(self.train), self.steps_per_epoch()
        if self.cfg.fixed_batches:
            order = torch.randperm(n, generator=_generator(self.cfg.seed, 0))
            return order, torch.randperm(steps, generator=_generator(self.cfg.seed, epoch, 2)
                                         ).tolist()
        return torch.randperm(n, generator=_generator(self.cfg.seed, epoch)), list(range(steps))

    def batch_indices(self, epoch: int, step: int) -> tuple[int, torch.Tensor]:
        """(batch id, sample indices) of a step (see :meth:`epoch_plan`)."""
        bs = self.cfg.batch_size
        order, batches = self.epoch_plan(epoch)
        batch = batches[step]
        return batch, order[batch * bs:(batch + 1) * bs]

    def step_crop_flip(self, epoch: int, step: int, n: int) -> CropFlip | None:
        """The crops and flips of the ``n`` samples of a step's global batch (None without
        ``augment``): a function of (seed, epoch, step)."""
        if not self.cfg.augment:
            return None
        return draw_crop_flip(n, _generator(self.cfg.seed, epoch, step, 1))

    def train_batches(self, epoch: int, start_step: int = 0,
                      shard: DistContext = SINGLE) -> Iterator[TrainBatch]:
        """The batches of ``epoch`` from ``start_step``; in a distributed run, this rank's
        shard of each global batch (augmentation drawn for the global batch). On-the-fly PIs
        are computed for ``ON_THE_FLY_CHUNK`` steps at a time: one parallel call of the
        topology engine instead of one per step (each image's PI is its own, so the PIs are
        the same either way)."""
        last = self.steps_per_epoch()
        chunk = ON_THE_FLY_CHUNK if self.on_the_fly else 1
        for first in range(start_step, last, chunk):
            plans = [self._plan(epoch, step, shard)
                     for step in range(first, min(first + chunk, last))]
            views = [self.views(self.train, idx, crop) for _, _, idx, crop, _ in plans]
            pis: list[torch.Tensor | None] = [None] * len(plans)
            if self.on_the_fly:
                pis = list(self.pis_of(torch.cat(views)).split([len(v) for v in views]))
            for (step, batch, idx, _, size), view, pi in zip(plans, views, pis, strict=True):
                yield TrainBatch(step, batch, idx, self._inputs(self.train, idx, view, pi),
                                 self.train.labels[idx], size)

    def _plan(self, epoch: int, step: int, shard: DistContext
              ) -> tuple[int, int, torch.Tensor, CropFlip | None, int]:
        """(step, batch id, this rank's sample indices, their crops and flips, global size)."""
        batch, idx = self.batch_indices(epoch, step)
        crop = self.step_crop_flip(epoch, step, len(idx))
        part = shard.shard(len(idx))
        if crop is not None:
            crop = tuple(p[part] for p in crop)
        return step, batch, idx[part].to(self.device), crop, len(idx)

    @staticmethod
    def views(split: Split, idx: torch.Tensor | slice, crop: CropFlip | None = None
              ) -> torch.Tensor | None:
        """The uint8 images ``idx`` of ``split``, cropped and flipped per ``crop`` (None when
        the split keeps no raw images)."""
        if split.raw is None:
            return None
        x = split.raw[idx]
        return apply_crop_flip(x, crop) if crop is not None else x

    def inputs(self, split: Split, idx: torch.Tensor | slice, crop: CropFlip | None = None
               ) -> dict[str, torch.Tensor]:
        """The networks' inputs (float in [0, 1]) of samples ``idx``."""
        return self._inputs(split, idx, self.views(split, idx, crop))

    def _inputs(self, split: Split, idx: torch.Tensor | slice, views: torch.Tensor | None,
                pi: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Inputs from the (augmented) uint8 ``views``; ``pi``: their on-the-fly (uint8) PIs
        when already computed."""
        out = {}
        if views is not None:
            if split.pi is None and "pi" in self.kinds:  # on the fly: the PIs of these views
                out["pi"] = (pi if pi is not None else self.pis_of(views)).float().div_(255.0)
            out["raw"] = views.float().div_(255.0)
        if split.pi is not None:
            out["pi"] = split.pi[idx].float().div_(255.0)
        return out

    def pis_of(self, views: torch.Tensor) -> torch.Tensor:
        """uint8 PI stacks (N×K×R×C, as the PI cache holds them) of uint8 N×3×H×W views, by
        the topology engine, on the device."""
        images = views.permute(0, 2, 3, 1).cpu().numpy()
        u8 = compute_pis(np.ascontiguousarray(images), self.rep, raw=False)[1]
        return torch.from_numpy(u8).to(self.device)

    def test_batches(self, batch_size: int = 500, shard: DistContext = SINGLE
                     ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
        """The test split in batches (in a distributed run, this rank's contiguous part)."""
        part = shard.shard(len(self.test))
        for start in range(part.start, part.stop, batch_size):
            sl = slice(start, min(start + batch_size, part.stop))
            yield self.inputs(self.test, sl), self.test.labels[sl]
