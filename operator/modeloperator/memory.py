"""Giving memory back to the system after a burst of work.

A burst (a thousand Models applied at once, then deleted) leaves the operator's heap full of
freed blocks: TLS buffers of the API connections it opened, the bodies its workers held. CPython
and glibc keep that memory for reuse, so the process stayed some 40 MB above what it holds alive
(measured at 1,000 Models: 182 MB at rest, 145 MB after a collection and ``malloc_trim``; at the
height of the burst a pass took it from 369 to 153 MB). Every 20 s, when the count of Python
blocks moved or the resident size grew since the last pass, one pass collects cycles and hands
free pages back; once things are quiet again, one last pass a little later returns what the
burst's stragglers freed (idle kopf workers, kept-alive connections closing after 15 s). At rest
nothing runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_SECONDS = 20.0
CHANGE = 0.05  # a pass runs once the count of allocated blocks moved by this fraction,
GROWTH = 0.10  # or the resident size grew by this fraction
SETTLE_CHECKS = 2  # quiet checks after a pass before the last one


def resident_bytes() -> int | None:
    """The process's resident size (Linux), else None."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None on other C libraries (musl has no such call)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    return trim


class MemoryKeeper:
    def __init__(self, check_seconds: float = CHECK_SECONDS) -> None:
        self.check_seconds = check_seconds
        self._trim = _malloc_trim()
        self._blocks = sys.getallocatedblocks()
        self._resident = resident_bytes()
        self.passes = 0
        self._quiet: int | None = None  # quiet checks since the last pass; None: settled

    def due(self) -> bool:
        """True when the Python heap grew or shrank, or the process grew (buffers that are not
        Python objects: TLS, sockets), noticeably since the last pass."""
        blocks = sys.getallocatedblocks()
        if abs(blocks - self._blocks) > CHANGE * max(self._blocks, 1):
            return True
        resident = resident_bytes()
        return bool(resident and self._resident and resident > self._resident * (1 + GROWTH))

    def release(self) -> None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)
        self._blocks = sys.getallocatedblocks()
        self._resident = resident_bytes()
        self.passes += 1

    def check(self) -> bool:
        """One look: a pass when due, or the last pass once quiet long enough after one."""
        if self.due():
            self._quiet = 0
        elif self._quiet is None:  # settled: at rest nothing runs
            return False
        else:
            self._quiet += 1
            if self._quiet < SETTLE_CHECKS:
                return False
            self._quiet = None  # the last pass after a burst
        before = resident_bytes() or 0
        self.release()
        log.info("memory returned: resident %d -> %d MB", before >> 20, (self._resident or 0) >> 20)
        return True

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            self.check()
