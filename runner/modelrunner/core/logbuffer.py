"""The runner's recent log lines, kept in memory for DMR's ``GET /logs`` (and its ``follow``).

A logging handler formats each record as DMR's service log does, ``[<RFC 3339 UTC>] <LEVEL>
<logger>: <message>``, keeps the last ``capacity`` lines and wakes followers. Lines from the
engine (llama.cpp) are marked so that ``no-engines`` can leave them out.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from dataclasses import dataclass
from datetime import UTC, datetime

CAPACITY = 5000
LOGGERS = ("modelrunner", "uvicorn.error", "llama_cpp")
_ENGINE_PREFIXES = ("modelrunner.engine", "llama_cpp")
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    engine: bool


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int = CAPACITY) -> None:
        super().__init__()
        self.lines: collections.deque[Line] = collections.deque(maxlen=capacity)
        self._count = 0
        self._lock2 = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            when = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            text = f"[{when}] {record.levelname} {record.name}: {record.getMessage()}"
            if record.exc_info:
                text += "\n" + logging.Formatter().formatException(record.exc_info)
        except Exception:  # a bad log call must never break the caller
            return
        engine = record.name.startswith(_ENGINE_PREFIXES)
        with self._lock2:
            self._count += 1
            self.lines.append(Line(self._count, text, engine))
            waiters, self._waiters = self._waiters, []
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    def since(self, number: int, engines: bool = True) -> tuple[list[Line], int]:
        """Lines after ``number`` (engine lines only if ``engines``) and the newest number."""
        with self._lock2:
            lines = [x for x in self.lines if x.number > number and (engines or not x.engine)]
            return lines, self._count

    async def wait(self, number: int, seconds: float) -> None:
        """Return when a line after ``number`` exists, or after ``seconds``."""
        event = asyncio.Event()
        with self._lock2:
            if self._count > number:
                return
            self._waiters.append((asyncio.get_running_loop(), event))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)

    def install(self, level: str = "info") -> None:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            logger.addHandler(self)
            if logger.level == logging.NOTSET:
                logger.setLevel(_LEVELS.get(level.lower(), logging.INFO))

    def uninstall(self) -> None:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(self)
