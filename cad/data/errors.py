"""The one error a user sees when a dataset cannot be found or read."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchAttempt:
    """One place a dataset was looked for, and what was found there."""

    place: str  # a path or URL
    outcome: str  # "missing", "unreadable: <reason>", "download failed: <reason>", ...

    def __str__(self) -> str:
        return f"  - {self.place}: {self.outcome}"


class DatasetNotFoundError(FileNotFoundError):
    """No readable copy of a dataset was found. The message names every place searched and how to provide it."""

    def __init__(self, dataset: str, attempts: list[SearchAttempt], how_to_provide: str):
        self.dataset = dataset
        self.attempts = list(attempts)
        places = "\n".join(str(a) for a in self.attempts) or "  (nowhere)"
        super().__init__(
            f"Dataset '{dataset}' not found or unreadable. Looked in:\n{places}\n"
            f"To provide it:\n{how_to_provide}"
        )
