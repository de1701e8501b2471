"""Step 4 of verify-load, measured: time per case, an AMOS-sized estimate, peak memory and peak
GPU memory of the run under the server's limits.

Why apart from the runs: these rows judge numbers (the engine's METRICS_FILE, the container's
cgroup peak) against the server's budget; they need no Docker and are testable as data.
"""
from __future__ import annotations

import os

from amoskit import contract
from amoskit.daemon.memory_bound import host_memory_bytes
from amoskit.daemon.organiser_run import RunResult, saw_gpu
from amoskit.verify.engine_metrics import amos_sized_estimate, case_seconds, record
from amoskit.verify.report import RUN, Verdict


def check_time_per_case(r: RunResult, n_cases: int, v: Verdict) -> None:
    secs = case_seconds(r.metrics)
    if secs:
        worst = max(secs.items(), key=lambda kv: kv[1])
        v.add(RUN, "time per case", "pass", "; ".join(f"{k} {s:.1f} s" for k, s in secs.items())
              + f" (slowest {worst[0]})", seconds=secs)
    else:
        v.add(RUN, "time per case", "info", f"~{r.seconds / max(n_cases, 1):.1f} s per case "
                                            f"incl. start-up (no per-case metrics from the "
                                            f"engine)")


def check_amos_sized(r: RunResult, server: contract.ServerLimits, v: Verdict) -> None:
    """The samples are small: what a real AMOS case would take, estimated (info only)."""
    est = amos_sized_estimate(r.metrics)
    if not est:
        return
    where = "on the GPU" if saw_gpu(r.device) else f"on {server.cpus:g} CPUs"
    shape = "x".join(str(n) for n in reversed(contract.AMOS_CASE_SHAPE))
    mm = "x".join(f"{s:g}" for s in reversed(contract.AMOS_CASE_SPACING))
    v.add(RUN, "AMOS-sized case", "info",
          f"~{est['seconds']:.0f} s per {shape} case ({mm} mm) {where}, estimated: "
          f"{est['factor']:.1f}x the voxels of {est['case']} at the model's spacing; "
          f"200 such cases ~{est['seconds'] * 200 / 3600:.1f} h", seconds=est["seconds"])


def check_peak_memory(r: RunResult, v: Verdict) -> None:
    """The container's cgroup peak, else the engine's own peak RSS, against the 30 GB."""
    engine_rss = record(r.metrics).peak_rss_bytes
    peak, source = ((r.peak_memory_bytes, "container cgroup") if r.peak_memory_bytes else
                    (engine_rss, "engine's peak RSS") if isinstance(engine_rss, int) and engine_rss
                    else (0, ""))
    host = host_memory_bytes()
    capped = (f"; this host has {host / 1024 ** 3:.1f} GiB, less than the server: the memory "
              f"check is capped by the host" if host and host < contract.SERVER_MEMORY_BYTES
              else "")
    if peak:
        v.add(RUN, "peak memory", "pass" if peak < 0.9 * contract.SERVER_MEMORY_BYTES else "warn",
              f"{peak / 1024 ** 3:.2f} GiB of the {contract.SERVER_MEMORY.rstrip('g')} GB limit "
              f"({source}){capped}", bytes=peak)
    else:
        v.add(RUN, "peak memory", "info", "not measured (container cgroup not readable)")


def check_peak_gpu_memory(r: RunResult, v: Verdict) -> None:
    """Only when the engine measured any: against the RTX 3090's memory."""
    gpu_peaks = [c.peak_gpu_bytes or 0 for c in record(r.metrics).cases]
    if any(gpu_peaks):
        gb = max(gpu_peaks) / 1024 ** 3
        limit = contract.SERVER_GPU_MEMORY_GB
        v.add(RUN, "peak GPU memory", "pass" if gb <= limit else "fail",
              f"{gb:.2f} GiB of the {limit} GB an RTX 3090 offers", bytes=max(gpu_peaks))


def fill_case_views(r: RunResult, v: Verdict) -> None:
    """Each case's time, memory estimate and GPU peak, for the report's per-case part."""
    rec = record(r.metrics)
    secs = case_seconds(r.metrics)
    for c in rec.cases:
        name = os.path.basename(str(c.name))
        if not name:
            continue
        view = v.case(name)
        view.seconds = secs.get(name)
        view.peak_gpu_bytes = c.peak_gpu_bytes or None
        view.memory_estimate_bytes = (rec.host_estimate_bytes.get(c.name) or
                                      rec.host_estimate_bytes.get(name) or None)


def check_measures(r: RunResult, n_cases: int, server: contract.ServerLimits,
                   v: Verdict) -> None:
    """The measured rows of the server-limits run, in the verdict's order."""
    fill_case_views(r, v)
    check_time_per_case(r, n_cases, v)
    check_amos_sized(r, server, v)
    check_peak_memory(r, v)
    check_peak_gpu_memory(r, v)
