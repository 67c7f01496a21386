"""Training: the engine, optimizers, clipping, events and checkpoints. Never imports a UI."""

from .config import ConfigError, TrainConfig
from .engine import Trainer
from .optim import OPTIMIZERS, clip_gradients
from .runs import TrainedRun, load_run

__all__ = ["Trainer", "TrainConfig", "ConfigError", "OPTIMIZERS", "clip_gradients", "load_run", "TrainedRun"]
