"""Training: typed configs (:mod:`.config`), tensor data (:mod:`.data`), the loop (:mod:`.engine`)."""

from tgd_core.training.config import TrainConfig
from tgd_core.training.engine import Stopped, learning_rate, run_training

__all__ = ["Stopped", "TrainConfig", "learning_rate", "run_training"]
