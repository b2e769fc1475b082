"""Errors that carry the offending file and a plain-language problem.

Every stage CLI catches :class:`InputError`, prints ``error: <file>: <problem>`` and exits
with status 2, after removing its temporary outputs.
"""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad user input: names the file (or folder) and what is wrong with it."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self) -> tuple[type, tuple[str | None, str]]:
        # raised in a worker process of a parallel stage, it crosses to the main process by pickle
        return (type(self), (self.path, self.problem))


class Terminated(BaseException):
    """SIGTERM arrived (``scancel``, a SLURM time limit, ``kill``): unwinds like Ctrl-C, so
    temporary outputs are removed and locks released before the process exits."""
