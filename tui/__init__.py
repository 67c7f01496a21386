"""rnnjit-tui: a Textual dashboard that shows a recurrent network learning (``rnnjit_tui.app``)."""
