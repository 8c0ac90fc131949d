"""The one-off cache trainings draw their progress bar on a terminal only, never into a redirected log."""
import io
import sys

from cad.training.progress import on_terminal


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_and_none_into_a_log(monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert on_terminal()
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # CI's and nohup's redirected stderr
    assert not on_terminal()
