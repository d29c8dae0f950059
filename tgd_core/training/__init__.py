"""Training: typed configs (:mod:`.config`), tensor data (:mod:`.data`), the loop
(:mod:`.trainer`: :class:`~.trainer.Trainer`, :func:`~.trainer.run_training`), its state
(:mod:`.loop_state`) and run files (:mod:`.run_files`), early stops (:mod:`.stopping`), the
teacher-target cache (:mod:`.targets`) and the ``train``/``distill`` job kinds (:mod:`.jobs`).

Importing this package (or :mod:`.config`) does not import torch: the loop's names are loaded
on first use, so a CLI that only validates a config starts fast.
"""

from tgd_core.training.config import TrainConfig
from tgd_core.training.stopping import Interrupted, Stopped, interruptible

_LOOP_NAMES = ("Trainer", "learning_rate", "run_training")


def __getattr__(name: str):
    """The loop's names, from :mod:`.trainer` (torch) on first use."""
    if name in _LOOP_NAMES:
        from tgd_core.training import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Interrupted", "Stopped", "TrainConfig", "Trainer", "interruptible", "learning_rate",
           "run_training"]
