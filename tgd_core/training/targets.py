"""Cache of teacher targets: without augmentation a teacher sees the same inputs every epoch,
so what a method needs from it is computed once and reused.

Per-sample targets (logits, attention maps, hints) are stored by sample index; per-batch targets
(b × b similarity maps) by batch id, which only repeats with ``fixed_batches``. The cache is
used only when every target of the method can be served from it and the per-sample storage fits
``max_bytes``; otherwise the teachers run live. Cached values are the teachers' own outputs
(eval mode), so training sees the same numbers up to floating-point rounding.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from tgd_core.distill.base import Distiller

MAX_BYTES = 4 * 2**30


class TargetCache:
    def __init__(self, probe_targets: Mapping[str, torch.Tensor], per_sample: tuple[str, ...],
                 n_samples: int, device: torch.device) -> None:
        self.per_sample = per_sample
        self.per_batch = tuple(k for k in probe_targets if k not in per_sample)
        self.rows = {k: probe_targets[k].new_zeros((n_samples, *probe_targets[k].shape[1:]))
                     for k in per_sample}
        self.filled = torch.zeros(n_samples, dtype=torch.bool, device=device)
        self.batches: dict[int, dict[str, torch.Tensor]] = {}
        self.hits = self.misses = 0

    @classmethod
    def create(cls, distiller: Distiller, n_samples: int, probe: Mapping[str, torch.Tensor], *,
               augment: bool, fixed_batches: bool, enabled: bool = True,
               max_bytes: int = MAX_BYTES) -> TargetCache | None:
        """A cache for ``distiller``, or None when caching cannot serve it. ``probe``: one batch
        of inputs, to learn the targets' shapes."""
        if not enabled or augment or not distiller.teachers:
            return None
        targets = distiller.teacher_targets(probe)
        per_sample = tuple(distiller.per_sample_targets)
        if set(targets) - set(per_sample) and not fixed_batches:
            return None
        row_bytes = sum(targets[k][0].numel() * targets[k].element_size() for k in per_sample)
        if row_bytes * n_samples > max_bytes:
            return None
        device = next(iter(targets.values())).device
        return cls(targets, per_sample, n_samples, device)

    def targets(self, distiller: Distiller, inputs: Mapping[str, torch.Tensor],
                idx: torch.Tensor, batch: int) -> dict[str, torch.Tensor]:
        """The targets of the batch (sample indices ``idx``, batch id ``batch``)."""
        if bool(self.filled[idx].all()) and (not self.per_batch or batch in self.batches):
            self.hits += 1
            return {**{k: v[idx] for k, v in self.rows.items()}, **self.batches.get(batch, {})}
        self.misses += 1
        targets = distiller.teacher_targets(inputs)
        for k in self.per_sample:
            self.rows[k][idx] = targets[k]
        self.filled[idx] = True
        if self.per_batch:
            self.batches[batch] = {k: targets[k] for k in self.per_batch}
        return targets
