"""The registry of trainable tasks: ``rnnjit train --task NAME``.

    charlm     a character-level language model on a corpus (--corpus)       many-to-many, aligned
    adding     the adding problem at T = --length                            many-to-one
    copy       the copy task: recall 10 symbols after T blanks               many-to-many, delayed
    captions   caption small synthetic images                                one-to-many
    dates      human-written dates to ISO 8601                               encoder-decoder
"""

from .lm_task import CharLMTask
from .synthetic_tasks import SYNTHETIC_TASKS

TASKS = {"charlm": CharLMTask, **SYNTHETIC_TASKS}
