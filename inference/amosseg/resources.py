"""CPU and memory the container may really use (cgroup v1 and v2), not the host's counts.

Why: the organisers give the container 4 CPUs and 30 GB on a bigger host; sizing threads or memory
from the host's numbers oversubscribes the CPU quota and invites the OOM killer.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota(root: Path = _CGROUP) -> float | None:
    """CPUs allowed by the cgroup quota (e.g. 4.0), or None when unlimited."""
    v2 = _read(root / "cpu.max")
    if v2:
        quota, _, period = v2.partition(" ")
        if quota != "max" and period:
            return int(quota) / int(period)
        return None
    quota = _read(root / "cpu" / "cpu.cfs_quota_us") or _read(root / "cpu.cfs_quota_us")
    period = _read(root / "cpu" / "cpu.cfs_period_us") or _read(root / "cpu.cfs_period_us")
    if quota and period and int(quota) > 0:
        return int(quota) / int(period)
    return None


def usable_cpus(root: Path = _CGROUP) -> int:
    """Threads to use: min(affinity, ceil(cgroup quota)), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    quota = cpu_quota(root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def memory_limit_bytes(root: Path = _CGROUP) -> int | None:
    """The container's memory limit, or None when unlimited (huge v1 values count as unlimited)."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    v1 = _read(root / "memory" / "memory.limit_in_bytes") or _read(root / "memory.limit_in_bytes")
    if v1 is not None and int(v1) < (1 << 60):
        return int(v1)
    return None


def memory_used_bytes(root: Path = _CGROUP) -> int | None:
    v = _read(root / "memory.current") or _read(root / "memory" / "memory.usage_in_bytes")
    return int(v) if v else None


def reclaimable_bytes(root: Path = _CGROUP) -> int:
    """Page cache the kernel drops before it fails an allocation: the cgroup's inactive files
    (v2 memory.stat `inactive_file`, v1 `total_inactive_file`). Counting it as used refused cases
    that fit, after reading a few large ones had filled the cache."""
    for stat, key in ((root / "memory.stat", "inactive_file"),
                      (root / "memory" / "memory.stat", "total_inactive_file"),
                      (root / "memory.stat", "total_inactive_file")):
        for line in (_read(stat) or "").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    return 0


def cgroup_headroom_bytes(root: Path = _CGROUP) -> int | None:
    """Limit minus what is really in use (usage less reclaimable cache); None when unlimited."""
    limit = memory_limit_bytes(root)
    if limit is None:
        return None
    used = max(0, (memory_used_bytes(root) or 0) - reclaimable_bytes(root))
    return limit - used


def host_available_bytes() -> int:
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def available_memory_bytes(root: Path = _CGROUP) -> int:
    """Bytes this process can still allocate: the tighter of cgroup headroom and host MemAvailable."""
    avail = host_available_bytes()
    headroom = cgroup_headroom_bytes(root)
    if headroom is not None:
        avail = min(avail, headroom)
    return max(0, avail)


def peak_rss_bytes() -> int:
    """Peak resident memory of this process (VmHWM)."""
    for line in (_read(Path("/proc/self/status")) or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0
