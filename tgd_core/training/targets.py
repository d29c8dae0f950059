"""Cache of teacher targets: without augmentation a teacher sees the same inputs every epoch,
so what a method needs from it is computed once and reused.

Two ways to keep them, the first that serves the method within the memory budget:

- **targets**: per-sample targets (logits, attention maps, hints) by sample index; per-batch
  targets (b × b similarity maps) by batch id, which only repeats with ``fixed_batches``.
- **rows**: the teachers' per-sample outputs (:meth:`Distiller.teacher_rows`: logits and
  features) by sample index, from which each step derives its batch's targets
  (:meth:`Distiller.targets_from_rows`) — the way to serve similarity maps when the batches
  change every epoch (the paper's protocol): a Gram matrix of cached features costs a small
  fraction of the two teachers' forward passes it replaces.

Otherwise the teachers run live. Cached values are the teachers' own outputs (eval mode, the
steps' autocast), so training sees the same numbers up to floating-point rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch

from tgd_core.distill.base import Distiller

log = logging.getLogger(__name__)

MAX_BYTES = 4 * 2**30  # the budget on the CPU unless configured
DEVICE_SHARE = 0.5  # on an accelerator: at most this share of its free memory


def cache_budget(device: torch.device, cap_gib: float | None) -> int:
    """Bytes the cache may hold: ``cap_gib`` (default 4 GiB on the CPU, no cap elsewhere) and,
    on CUDA, at most half the device's free memory at this moment — a run that starts beside
    others (``--parallel``) leaves them room."""
    budget = MAX_BYTES if cap_gib is None and device.type != "cuda" else (
        float("inf") if cap_gib is None else cap_gib * 2**30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget = min(budget, DEVICE_SHARE * free)
    return int(budget)


class TargetCache:
    """Teacher targets (or the rows they are made of) kept by sample, and per-batch targets by
    batch id; :meth:`create` picks the way (module doc)."""

    def __init__(self, rows: Mapping[str, torch.Tensor], n_samples: int, device: torch.device,
                 per_batch: tuple[str, ...] = (),
                 derive: Callable[[dict], dict] | None = None) -> None:
        self.rows = {k: v.new_zeros((n_samples, *v.shape[1:])) for k, v in rows.items()}
        self.per_batch, self.derive = per_batch, derive
        self.filled = torch.zeros(n_samples, dtype=torch.bool, device=device)
        self.batches: dict[int, dict[str, torch.Tensor]] = {}
        self.hits = self.misses = 0

    def describe(self) -> str:
        """What it keeps and its size (per-batch maps, which grow as batches are met, aside):
        for ``result.json``."""
        what = "outputs" if self.derive is not None else "targets"
        size = sum(v.numel() * v.element_size() for v in self.rows.values())
        shift, unit = (30, "GiB") if size >= 2**30 else (20, "MiB")
        return f"cached: the teachers' per-sample {what}, {size / 2**shift:.3g} {unit}"

    @classmethod
    def create(cls, distiller: Distiller, n_samples: int, probe: Mapping[str, torch.Tensor], *,
               augment: bool, fixed_batches: bool, enabled: bool = True,
               max_bytes: int = MAX_BYTES) -> tuple[TargetCache | None, str]:
        """A cache for ``distiller`` (None when caching cannot serve it within ``max_bytes``)
        and how the teachers are served, for ``result.json``: :meth:`describe`, or why they run
        live (:func:`why_live`; over the budget, or out of device memory: one warning each).
        ``probe``: one batch of inputs, to learn the targets' shapes."""
        reason = why_live(distiller, augment=augment, enabled=enabled)
        if reason is not None:
            return None, reason
        rows = distiller.teacher_rows(probe)
        targets = distiller.targets_from_rows(rows)
        per_sample = tuple(distiller.per_sample_targets)
        per_batch = tuple(k for k in targets if k not in per_sample)
        device = next(iter(targets.values())).device
        needed = []
        if not per_batch or fixed_batches:
            sample_targets = {k: targets[k] for k in per_sample}
            needed.append(_bytes(sample_targets, n_samples))
            if needed[-1] <= max_bytes:
                return cls._allocate(sample_targets, n_samples, device, per_batch=per_batch)
        if per_batch:
            needed.append(_bytes(rows, n_samples))
            if needed[-1] <= max_bytes:
                return cls._allocate(rows, n_samples, device, derive=distiller.targets_from_rows)
        reason = (f"live: no cache fits its budget of {max_bytes / 2**30:.3g} GiB "
                  f"({min(needed) / 2**30:.3g} GiB needed)")
        log.warning("teacher cache: %s", reason.removeprefix("live: "))
        return None, reason

    @classmethod
    def _allocate(cls, rows: Mapping[str, torch.Tensor], n_samples: int, device: torch.device,
                  **how) -> tuple[TargetCache | None, str]:
        """The cache and its description, or None and why (one warning) where the device has
        not the memory after all."""
        try:
            cache = cls(rows, n_samples, device, **how)
        except torch.OutOfMemoryError:
            reason = (f"live: the cache ({_bytes(rows, n_samples) / 2**30:.3g} GiB) did not fit "
                      f"in the memory of {device}")
            log.warning("teacher cache: %s", reason.removeprefix("live: "))
            return None, reason
        return cache, cache.describe()

    def targets(self, distiller: Distiller, inputs: Mapping[str, torch.Tensor],
                idx: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        """The targets of the batch (sample indices ``idx``, batch id ``batch``)."""
        if bool(self.filled[idx].all()) and (not self.per_batch or batch in self.batches):
            self.hits += 1
            return self.lookup(idx, batch)
        self.misses += 1
        if self.derive is not None:
            rows = distiller.teacher_rows(inputs)
            self.store(rows, idx)
            return self.derive(rows)
        targets = distiller.teacher_targets(inputs)
        self.store(targets, idx)
        if self.per_batch:
            self.batches[batch] = {k: targets[k] for k in self.per_batch}
        return targets

    def store(self, values: Mapping[str, torch.Tensor], idx: torch.Tensor) -> None:
        """Keep the batch's per-sample values by sample index."""
        for k, rows in self.rows.items():
            rows[idx] = values[k]
        self.filled[idx] = True

    def gather(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The rows kept for the samples ``idx`` (filled, unchecked)."""
        return {k: v[idx] for k, v in self.rows.items()}

    def lookup(self, idx: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        """The targets of a batch whose samples (and, for per-batch targets, batch id) are
        filled, without checking that they are."""
        rows = self.gather(idx)
        if self.derive is not None:
            return self.derive(rows)
        return {**rows, **self.batches.get(batch, {})}


def why_live(distiller: Distiller, *, augment: bool, enabled: bool) -> str | None:
    """Why no cache can serve ``distiller`` whatever the budget (None: one may)."""
    if not distiller.teachers:
        return "none: the method has no teachers"
    if not enabled:
        return "live: teacher_cache is off"
    if augment:
        return "live: augmented inputs change every epoch"
    return None


def _bytes(rows: Mapping[str, torch.Tensor], n_samples: int) -> int:
    """Bytes of ``n_samples`` rows shaped as one batch's ``rows``."""
    return sum(v[0].numel() * v.element_size() for v in rows.values()) * n_samples
