"""The registry of trainable tasks: ``rnnjit train --task NAME``."""

from .lm_task import CharLMTask

TASKS = {"charlm": CharLMTask}
