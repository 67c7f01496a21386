"""The dashboard's drawing widgets: small, dependency-free, drawn line by line."""

from .bars import GradBars
from .base import StripWidget, TextLines
from .heatmap import GradHeatmap
from .loss import LossPlot

__all__ = ["GradBars", "GradHeatmap", "LossPlot", "StripWidget", "TextLines"]
