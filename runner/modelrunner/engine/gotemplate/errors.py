"""The one error type of the Go template engine."""

from __future__ import annotations


class TemplateError(ValueError):
    """A template failed to parse or to execute.

    ``line`` is the 1-based source line where the problem was found, when known; the message
    starts with ``line N:`` in that case.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(f"line {line}: {message}" if line is not None else message)
