"""What the engine's METRICS_FILE says about a run: seconds per case, and an AMOS-sized estimate.

Why apart from the container runs (amoskit.daemon.organiser_run): reading and judging the
engine's record is a different job from starting containers, and it is tested as data. The
file is read through the engine's own description of it (amosseg.run_metrics).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from amosseg import run_metrics

from amoskit import contract


def read_metrics(metrics_dir: Path) -> dict:
    """The engine's metrics.json in metrics_dir, or {} when absent or unreadable."""
    try:
        return json.loads((metrics_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return {}


def record(metrics: dict) -> run_metrics.RunRecord:
    """The engine's typed record of a metrics dict (unknown keys ignored, missing ones default)."""
    return run_metrics.RunRecord.from_dict(metrics)


def total_seconds(seconds: dict) -> float | None:
    """A case's seconds split by stage: total, else compute + write, else the sum; None if none."""
    parts = {k: v for k, v in seconds.items() if isinstance(v, (int, float))}
    if parts.get("total"):
        return float(parts["total"])
    if "compute_total" in parts:
        return float(parts["compute_total"] + parts.get("write", 0.0))
    return float(sum(parts.values())) if parts else None


def case_seconds(metrics: dict) -> dict[str, float]:
    """Per-case seconds from the engine's METRICS_FILE (cases without timings left out)."""
    out = {}
    for c in record(metrics).cases:
        secs = total_seconds(c.seconds)
        if c.name and secs is not None:
            out[os.path.basename(str(c.name))] = secs
    return out


def amos_sized_estimate(metrics: dict) -> dict | None:
    """Seconds an AMOS-sized case would take, from the sample case with the most voxels at the
    model's spacing, scaled by voxel count (the network's tile count grows with it).

    Why: sample cases are small, so their seconds understate a real case; the CPU-only time of a
    real-size model decides whether a run without a GPU can finish at all. The model's spacing is
    read back from the engine's metrics (spacing x shape / shape after resampling), assuming no
    transposition; it is an estimate, said as such where it is shown."""
    secs = case_seconds(metrics)
    best = None
    for c in record(metrics).cases:
        name = os.path.basename(str(c.name))
        if name not in secs or not all(isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and x > 0 for x in v)
                for v in (c.shape, c.spacing, c.target_shape)):
            continue
        voxels = float(math.prod(c.target_shape))
        if best is None or voxels > best["sample_voxels"]:
            model_spacing = [s * n / t for s, n, t in zip(c.spacing, c.shape, c.target_shape)]
            best = {"case": name, "sample_voxels": voxels, "sample_seconds": secs[name],
                    "model_spacing": model_spacing}
    if best is None:
        return None
    ref = 1.0
    for n, s, m in zip(contract.AMOS_CASE_SHAPE, contract.AMOS_CASE_SPACING, best["model_spacing"]):
        ref *= max(1.0, round(n * s / m))
    best["factor"] = ref / best["sample_voxels"]
    best["seconds"] = best["sample_seconds"] * best["factor"]
    return best
