"""Training from scratch: no teacher, cross-entropy on the labels only.

    L = CE(z_S, y)

The baseline every distillation method is compared against (and the student TGD may start
from, see ``init_student`` in the training config).
"""

from __future__ import annotations

import torch.nn.functional as F

from tgd_core.distill.base import Distiller
from tgd_core.distill.registry import register_method


@register_method("scratch")
class Scratch(Distiller):
    """Cross-entropy on the labels: L = CE(z_S, y)."""

    def compute_losses(self, logits, features, targets, labels):
        return {"ce": F.cross_entropy(logits, labels)}
