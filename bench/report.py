"""Write one benchmark's section of BENCHMARKS.md, leaving the other sections as they are."""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nEach section is written by the script it names (`make bench` runs them all).\n"
    "Numbers are medians of several runs, compared with a baseline measured in the same run.\n"
)


def machine() -> str:
    load = os.getloadavg()[0]
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at start"
    )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def write_section(key: str, body: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else HEADER
    start, end = f"<!-- bench:{key}:start -->", f"<!-- bench:{key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    text = (
        pattern.sub(lambda _: block, text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    REPORT.write_text(text)


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The benchmark's arguments, and ``--no-write`` for :func:`publish`."""
    parser.add_argument("--no-write", action="store_true", help="print only; keep BENCHMARKS.md")
    return parser.parse_args()


def publish(key: str, body: str, args: argparse.Namespace) -> int:
    """Print ``body`` and make it section ``key`` of BENCHMARKS.md, unless ``--no-write``; 0,
    the exit status."""
    if not args.no_write:
        write_section(key, body)
    print(body)
    return 0
