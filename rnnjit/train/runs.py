"""A trained model back from its run directory, for use from Python.

    >>> from rnnjit.train import load_run
    >>> run = load_run("runs/shakespeare-lstm-20261126-101500")
    >>> from rnnjit.models import sample
    >>> sample(run.model, run.vocab, 200, prime="ROMEO:")

``load_run`` reads ``checkpoint.npz`` (its configuration is the one the run trained with) and
builds the task's model from it, in evaluation mode, without the data: a language model's corpus
file need not exist any more, its vocabulary is in the checkpoint. It only reads, so it works on
a run that ``rnnjit train`` is writing at that moment (the checkpoint is replaced atomically).

What each task gives back in ``model`` (and in ``vocab``, the symbols its outputs are made of):

    charlm    CharLM                  the corpus's Vocab
    copy      CharLM (one-hot input)  None: the symbols are 0 (blank), 1 (go) and the data 2..9
    adding    SequenceClassifier      None: it reads (T, B, 2) numbers and writes a sum
    captions  ConditionedGenerator    rnnjit.data.synthetic.CAPTION_WORDS
    dates     Seq2Seq                 rnnjit.data.synthetic.ISO_CHARS (the source: DATE_CHARS)
"""

from __future__ import annotations

import dataclasses
import os

from .checkpoint import CheckpointError, check_values, load_checkpoint
from .config import ConfigError, TrainConfig

CHECKPOINT = "checkpoint.npz"     # as the engine writes it (engine.CHECKPOINT)


@dataclasses.dataclass
class TrainedRun:
    model: object            # in evaluation mode
    vocab: object            # the output symbols' Vocab, or None (see the module's docstring)
    config: TrainConfig      # what the run trained with
    step: int                # the steps the checkpoint holds


def _parent_hint(path: str) -> str:
    """", here DIR" when the file ``path`` lies in a run directory (one holding a checkpoint)."""
    parent = os.path.dirname(path) or "."
    return f", here {parent}" if os.path.isfile(os.path.join(parent, CHECKPOINT)) else ""


def load_run(run_dir: str, device: str = "cpu") -> TrainedRun:
    """The model saved in ``run_dir``'s checkpoint, on ``device``. A missing directory or
    checkpoint, or one that does not describe a model, is a one-line ``CheckpointError``."""
    from ..data import Vocab
    from ..data import synthetic as syn
    from .synthetic_tasks import SYNTHETIC_TASKS
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise CheckpointError(f"{run_dir} is a file, not a run directory: pass the directory "
                              f"`rnnjit train` wrote{_parent_hint(run_dir)}")
    if not os.path.isdir(run_dir):
        raise CheckpointError(f"{run_dir}: no such run directory")
    path = os.path.join(run_dir, CHECKPOINT)
    arrays, meta = load_checkpoint(path)
    try:
        config = TrainConfig.from_dict(meta["config"]).validate()
        step = int(meta["step"])
    except (KeyError, TypeError, ValueError, AttributeError, ConfigError) as e:
        raise CheckpointError(f"checkpoint {path} does not describe a run ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:120] if str(e) else ''}): restore it from a copy") from None
    check_values(arrays, path, config.dtype)
    config = dataclasses.replace(config, device=device, cuda_graphs=False)
    try:
        if config.task == "charlm":
            from ..models import CharLM
            if "vocab" not in arrays:
                raise CheckpointError(f"checkpoint {path} of a language model has no vocabulary: restore it from a copy")
            vocab = Vocab.from_array(arrays["vocab"])
            cell, nl = ("rnn", "relu") if config.cell == "rnn-relu" else (config.cell, "tanh")
            model = CharLM(vocab.size, config.hidden, config.layers, cell, 0.0, config.embedding or None,
                           dtype=config.np_dtype, nonlinearity=nl, device=device)
        else:
            task = SYNTHETIC_TASKS[config.task]
            builder = task.__new__(task)          # the task's model alone, without its data
            builder.config = config
            model = builder.build_model()
            vocab = {"captions": syn.CAPTION_WORDS, "dates": syn.ISO_CHARS}.get(config.task)
        model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("param/")})
    except (ValueError, TypeError, KeyError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {path} does not match its configuration: "
                              f"{str(e).splitlines()[0][:160]}") from None
    model.eval()
    return TrainedRun(model, vocab, config, step)
