"""Models built from the layers: each formulation of a recurrent network is one small file."""

from .char_lm import CharLM
from .sampling import sample

__all__ = ["CharLM", "sample"]
