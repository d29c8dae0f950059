"""Distillation methods: one small :class:`Distiller` per module, registered by name.

Each method module (:mod:`.scratch`, :mod:`.kd`, :mod:`.mtkd`, :mod:`.tgd`, :mod:`.sp`,
:mod:`.at`, :mod:`.fitnet`) holds its ``Params``, its Distiller and the paper it follows, and
registers the Distiller with ``@register_method(name)`` (:mod:`.registry`). Importing this
package imports them all, so :data:`METHODS` is complete. The losses live in :mod:`.losses`.

Defaults: τ = 4, λ = 0.9 (KD weight), α = 0.99 (T1's share), β = 3000 (TGD similarity, applied
as β/3 per group sum), AT β = 1000 with p = 2, SP γ = 3000 (γ/3 per group sum, as TGD), FitNet
hint weight 100 on group 2.
"""

from __future__ import annotations

from tgd_core.distill.base import Distiller, MethodParams
from tgd_core.distill.registry import METHODS, get_method, register_method

# the method modules register themselves on import, in this order (the order of METHODS, as
# before the split into modules): not sorted on purpose
# isort: off
from tgd_core.distill import scratch, kd, mtkd, tgd, sp, at, fitnet  # noqa: F401
# isort: on

__all__ = ["Distiller", "METHODS", "MethodParams", "get_method", "register_method"]
