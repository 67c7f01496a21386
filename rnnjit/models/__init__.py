"""Models built from the layers: each formulation of a recurrent network is one small file."""

from .char_lm import CharLM
from .sampling import sample, sample_stream

__all__ = ["CharLM", "sample", "sample_stream"]

# The other formulations: many-to-one, one-to-many, encoder-decoder.
from .classifier import SequenceClassifier  # noqa: E402
from .generator import ConditionedGenerator  # noqa: E402
from .seq2seq import Seq2Seq  # noqa: E402

__all__ += ["SequenceClassifier", "ConditionedGenerator", "Seq2Seq"]
