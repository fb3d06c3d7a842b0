"""How many CPU threads llama.cpp should use by default.

llama.cpp's own tools default to the physical cores: two SMT siblings share one core's vector
units, so a thread per sibling only adds barrier waits. In a container the CPU quota (a pod's CPU
limit) matters too: threads beyond it are throttled in the middle of a step and stall the rest at
every barrier. Measured on 2 cores (BENCHMARKS.md): a fixed thread per core beat choosing between
1 and 2 threads per step by measured step time.
"""

from __future__ import annotations

import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def allowed_cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: set[int], sys_cpu: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct cores among ``cpus`` (CPUs that are SMT siblings count once)."""
    cores = set()
    for cpu in cpus:
        try:
            cores.add((sys_cpu / f"cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def cpu_quota(root: Path = _CGROUP) -> float | None:
    """CPUs the cgroup may use per period (cgroup v2 ``cpu.max``, v1 CFS quota); None: no limit."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu/cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu/cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def default_threads() -> int:
    """Physical cores this process may run on, at most the whole CPUs of its quota."""
    n = physical_cores(allowed_cpus())
    quota = cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return n
