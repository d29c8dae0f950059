"""The ``Distiller`` interface (after mdistiller): a student, frozen teachers, one loss recipe.

A distiller owns the student and any number of teachers. Teachers are frozen (no gradients) and
always in eval mode, whatever ``train()`` is called with, and run under ``torch.no_grad()``.
``forward_train(inputs, labels) -> (student logits, {loss term: value})``: the trainer sums
the terms. A method splits into :meth:`Distiller.teacher_targets` (what it needs from the
teachers) and :meth:`Distiller.compute_losses`, so the trainer can cache the targets of inputs
that do not change between epochs. ``inputs`` maps an input kind (``"raw"`` images, ``"pi"``
persistence-image stacks) to an N×C×H×W batch scaled to [0, 1]; each network reads the kind it
was trained on, normalised with its own statistics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from tgd_core.nets.network import Network


class MethodParams(BaseModel):
    """Hyper-parameters of a method (each method subclasses this; unknown keys and
    non-finite numbers are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Distiller(nn.Module):
    """Base class: ``name``, ``Params``, the roles of the teachers it needs, and the loss."""

    name: ClassVar[str]
    Params: ClassVar[type[MethodParams]] = MethodParams
    teacher_roles: ClassVar[tuple[str, ...]] = ()
    per_sample_targets: ClassVar[tuple[str, ...]] = ()
    #: loss terms computed over the whole (global) batch rather than averaged over samples —
    #: in a distributed run every rank holds their global value (see tgd_core.core.distributed)
    batch_level_terms: ClassVar[tuple[str, ...]] = ()
    needs_student_features: ClassVar[bool] = False

    def __init__(self, student: Network, teachers: Mapping[str, Network] | None = None,
                 params: MethodParams | None = None) -> None:
        super().__init__()
        teachers = dict(teachers or {})
        missing = set(self.teacher_roles) - set(teachers)
        if missing:
            from tgd_core.core.errors import TGDError

            raise TGDError(f"method {self.name!r} needs teacher(s) {sorted(missing)}")
        self.student = student.model
        self.student_input = student.input_kind
        self.student_norm = student.normalization
        self.teachers = nn.ModuleDict({role: t.model for role, t in teachers.items()})
        self.teacher_inputs = {role: t.input_kind for role, t in teachers.items()}
        self.teacher_norms = {role: t.normalization for role, t in teachers.items()}
        self.params = params if params is not None else self.Params()
        for teacher in self.teachers.values():
            teacher.requires_grad_(False)
            teacher.eval()

    @property
    def input_kinds(self) -> set[str]:
        return {self.student_input, *self.teacher_inputs.values()}

    def train(self, mode: bool = True) -> Distiller:
        super().train(mode)
        for teacher in self.teachers.values():
            teacher.eval()
        return self

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Student parameters plus the method's own (e.g. adapters); never the teachers'."""
        teacher_ids = {id(p) for p in self.teachers.parameters()}
        return (p for p in self.parameters() if id(p) not in teacher_ids)

    def student_forward(self, inputs: Mapping[str, torch.Tensor], features: bool = False):
        x = self.student_norm.apply(inputs[self.student_input])
        return self.student(x, return_features=features)

    @torch.no_grad()
    def teacher_forward(self, role: str, inputs: Mapping[str, torch.Tensor],
                        features: bool = False):
        x = self.teacher_norms[role].apply(inputs[self.teacher_inputs[role]])
        return self.teachers[role](x, return_features=features)

    def teacher_targets(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What the loss needs from the teachers for this batch (no gradients): the targets
        :meth:`targets_from_rows` makes of the teachers' :meth:`teacher_rows`. Keys listed in
        ``per_sample_targets`` have one row per sample and can be cached by sample; the others
        (e.g. b × b similarity maps) belong to the batch as a whole."""
        return self.targets_from_rows(self.teacher_rows(inputs))

    def teacher_rows(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The teachers' outputs for this batch, one row per sample (logits, attention maps,
        features; no gradients): what a cache keeps by sample when the batches change between
        epochs."""
        return {}

    @torch.no_grad()
    def targets_from_rows(self, rows: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch's targets from its samples' :meth:`teacher_rows`: the rows themselves,
        unless the method derives targets of the whole batch from them (similarity maps)."""
        return dict(rows)

    def compute_losses(self, logits: torch.Tensor, features: list[torch.Tensor] | None,
                       targets: Mapping[str, torch.Tensor], labels: torch.Tensor
                       ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def forward_train(self, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                      targets: Mapping[str, torch.Tensor] | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(student logits, {term: weighted loss}); the terms sum to the training loss.
        ``targets`` (from :meth:`teacher_targets`, possibly cached) skips the teachers."""
        if targets is None:
            targets = self.teacher_targets(inputs)
        if self.needs_student_features:
            logits, features = self.student_forward(inputs, features=True)
        else:
            logits, features = self.student_forward(inputs), None
        return logits, self.compute_losses(logits, features, targets, labels)

    def forward(self, inputs: Mapping[str, torch.Tensor], labels: torch.Tensor,
                targets: Mapping[str, torch.Tensor] | None = None):
        """:meth:`forward_train` (the call DistributedDataParallel wraps)."""
        return self.forward_train(inputs, labels, targets)

    def forward_test(self, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.student_forward(inputs)

    def extra_state(self) -> dict[str, Any]:
        """State of the method's own learnable modules (saved beside the student)."""
        own = {k: v for k, v in self.state_dict().items()
               if not k.startswith(("student.", "teachers."))}
        return own
