"""Compatibility names: the methods used to live in this one module.

Each method now has its own module (:mod:`.scratch`, :mod:`.kd`, :mod:`.mtkd`, :mod:`.tgd`,
:mod:`.sp`, :mod:`.at`, :mod:`.fitnet`) and registers itself in
:data:`tgd_core.distill.registry.METHODS`. Kept because ``app/jobs_view.py`` and
``app/teachers_view.py`` import ``TGDParams`` from here; import from the method modules instead.
"""

from __future__ import annotations

from tgd_core.distill.at import AT, ATParams
from tgd_core.distill.fitnet import FitNet, FitNetParams
from tgd_core.distill.kd import KD, KDParams
from tgd_core.distill.mtkd import MTKD, MTKDParams
from tgd_core.distill.registry import METHODS
from tgd_core.distill.scratch import Scratch
from tgd_core.distill.sp import SP, SPParams
from tgd_core.distill.tgd import TGD, TGDParams

__all__ = ["AT", "ATParams", "FitNet", "FitNetParams", "KD", "KDParams", "METHODS", "MTKD",
           "MTKDParams", "SP", "SPParams", "Scratch", "TGD", "TGDParams"]
