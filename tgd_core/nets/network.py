"""A network together with what it reads: its input kind and its normalisation.

A raw-image network reads N×3×H×W images scaled to [0, 1]; a PI network reads the stack of
persistence images of those images, in the representation it was trained on. Both are
normalised with the statistics the network was trained with (:mod:`tgd_core.data.normalization`).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tgd_core.data.normalization import Normalization


@dataclass
class Network:
    """A network, the input kind it reads (``"raw"`` | ``"pi"``) and the normalisation it was
    trained with."""

    model: nn.Module
    input_kind: str
    normalization: Normalization
