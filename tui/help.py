"""The help screen: what each key does and what each panel teaches."""

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]rnnjit-tui[/b]: a recurrent network learning, live.

[b]Keys[/b]
  [b]p[/b]      pause / resume (training is held after the current step)
  [b]s[/b]      sample now, at the current temperature
  [b]+ -[/b]    temperature up / down by 0.1 (also [b]][/b] and [b]\\[[/b]), used by the next sample
  [b]c[/b]      save a checkpoint now (checkpoint.npz in the run directory)
  [b]l[/b]      gradient panel: log / linear scale
  [b]n[/b]      gradient panel: next layer
  [b]? h[/b]    this help (escape closes it)
  [b]q[/b]      quit: training stops after the current step and saves a checkpoint

[b]Loss[/b]: [#4fc3f7]training loss[/] (a moving average) and [#ffb74d]validation loss[/] (on held-out text), \
in nats per character; bpc is bits per character. Validation turning up while training still falls is overfitting.

[b]Gradient norm per timestep[/b]: how much gradient, ‖dL/dh_t‖, reaches the hidden state at each timestep t \
of the truncated-BPTT chunk. Bars: the latest step, on a log scale. Heatmap: the same over the whole run, \
timesteps across (under the bars), training steps down, dark = small. In a language model every timestep has \
a loss of its own, so the bars stay fairly level; where the loss comes only at the end (a synthetic task such as \
--task adding), bars that fall away to the left, decade by decade, are the vanishing gradient: compare --cell rnn \
with lstm. Clipping firing often means the gradient explodes. \
‖g‖ is the global gradient norm before clipping, "clipped" how often clipping fired in the last 100 steps, \
t1/tT the gradient at the first timestep over the last (0.001: a thousandth of it gets back).

[b]Samples[/b]: what the model writes every --sample-every steps, newest first: noise, then letters, words, \
names, verse.

[b]Run[/b]: the configuration, progress, speed (tokens are characters), learning rate, elapsed time and an \
estimate of the time left.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,h,q", "app.pop_screen", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; padding: 0 1; background: $surface;
    }
    HelpScreen Static { height: auto; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP)
