"""The methods. ``scratch``: cross-entropy only (teachers and students trained from scratch)."""

from __future__ import annotations

import torch.nn.functional as F

from tgd_core.distill.base import Distiller


class Scratch(Distiller):
    """Cross-entropy on the labels: L = CE(z_S, y)."""

    name = "scratch"

    def forward_train(self, inputs, labels):
        logits = self.student_forward(inputs)
        return logits, {"ce": F.cross_entropy(logits, labels)}


METHODS: dict[str, type[Distiller]] = {cls.name: cls for cls in (Scratch,)}

