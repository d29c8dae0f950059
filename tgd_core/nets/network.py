"""A network together with what it reads: its input kind, its PI representation and its
normalisation.

A raw-image network reads N×3×H×W images scaled to [0, 1]; a PI network reads the stack of
persistence images of those images, in the representation it was trained on (the checkpoint's
``config["pi"]``; the authors' paper mode when none is recorded). Both are normalised with the
statistics the network was trained with (:mod:`tgd_core.data.normalization`).
:meth:`Network.input_for` and :func:`input_transform` are the one place images become what a
network reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import nn

from tgd_core.core.errors import TGDError
from tgd_core.data.normalization import Normalization

if TYPE_CHECKING:
    from tgd_core.nets.checkpoints import Checkpoint
    from tgd_core.topology.representation import Representation

INPUT_KINDS = ("raw", "pi")
ImageTransform = Callable[[np.ndarray], np.ndarray]


def as_representation(representation: Representation | dict[str, Any] | None
                      ) -> Representation:
    """A PI representation from a config object, a saved dict (``rep.to_dict()``) or None
    (paper mode, the authors')."""
    from tgd_core.topology.representation import PaperPIConfig, representation_from_dict

    if representation is None:
        return PaperPIConfig()
    if isinstance(representation, dict):
        return representation_from_dict(representation)
    return representation


def input_transform(input_kind: str, representation: Representation | dict[str, Any] | None
                    = None) -> ImageTransform | None:
    """uint8 N×H×W×3 images → what a network of ``input_kind`` reads, channels last: None for
    ``raw`` (the images themselves); for ``pi`` the uint8 PI stacks (N×rows×cols×K) of
    ``representation`` (None: paper mode), resolved once here."""
    if input_kind == "raw":
        return None
    if input_kind != "pi":
        raise TGDError(f"unknown input kind {input_kind!r}; expected 'raw' or 'pi'")
    from tgd_core.topology.representation import compute_pis

    rep = as_representation(representation)

    def pi_stacks(images: np.ndarray) -> np.ndarray:
        return compute_pis(images, rep, raw=False)[1].transpose(0, 2, 3, 1)

    return pi_stacks


@dataclass
class Network:
    """A network, the input kind it reads (``"raw"`` | ``"pi"``), the normalisation it was
    trained with and, for PI networks, its PI representation (a config or its dict; None:
    paper mode). ``representation`` is resolved to a config for PI networks and ignored for
    raw ones. ``num_classes``: the classes it predicts, where known (from a checkpoint)."""

    model: nn.Module
    input_kind: str
    normalization: Normalization
    representation: Representation | dict[str, Any] | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.input_kind == "pi":
            self.representation = as_representation(self.representation)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, device: Any = "cpu") -> Network:
        """The checkpoint's network (in eval mode on ``device``) with its input kind,
        normalisation and training-time PI representation (``ckpt.config["pi"]``)."""
        rep = ckpt.config.get("pi") if ckpt.input_kind == "pi" else None
        return cls(ckpt.build(device), ckpt.input_kind, ckpt.normalization, rep,
                   ckpt.num_classes)

    def input_for(self, images: np.ndarray) -> np.ndarray:
        """What this network reads for uint8 N×H×W×3 ``images``, channels last: the images
        (raw networks) or the uint8 PI stacks of its own representation (PI networks). The
        normalisation comes afterwards (:func:`tgd_core.data.normalization.to_model_input`)."""
        transform = input_transform(self.input_kind, self.representation)
        return images if transform is None else transform(images)
