"""Whether the one-off cache trainings (the map task's base, the text task's contrastive models and similarities) draw
a progress bar: on a terminal, yes; into a redirected log (CI, nohup), no. They run inside an experiment's first stage
and do not see its ``--no-progress``, and a bar redrawn into a log file is thousands of updates on one line."""
from __future__ import annotations

import sys


def on_terminal() -> bool:
    """True where stderr, which tqdm writes to, is a terminal."""
    return sys.stderr.isatty()
