"""The default thread count: physical cores of the affinity mask, capped by the CPU quota."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelrunner.engine import cpu


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_smt_siblings_count_once(tmp_path: Path) -> None:
    for n, siblings in enumerate(["0,2", "1,3", "0,2", "1,3", "4"]):
        write(tmp_path / f"cpu{n}/topology/thread_siblings_list", siblings + "\n")
    assert cpu.physical_cores({0, 1, 2, 3, 4}, tmp_path) == 3
    assert cpu.physical_cores({0, 2}, tmp_path) == 1
    assert cpu.physical_cores({7, 8}, tmp_path) == 2  # no topology: each CPU its own core


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
        ({}, None),
    ],
)
def test_cpu_quota(tmp_path: Path, files: dict[str, str], expected: float | None) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    assert cpu.cpu_quota(tmp_path) == expected


def test_default_threads_is_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpu, "allowed_cpus", lambda: set(range(8)))
    monkeypatch.setattr(cpu, "physical_cores", lambda cpus: len(cpus))
    monkeypatch.setattr(cpu, "cpu_quota", lambda: 2.5)
    assert cpu.default_threads() == 2
    monkeypatch.setattr(cpu, "cpu_quota", lambda: 0.5)
    assert cpu.default_threads() == 1
    monkeypatch.setattr(cpu, "cpu_quota", lambda: None)
    assert cpu.default_threads() == 8
