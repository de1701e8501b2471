"""The run-metrics file (METRICS_FILE): what one engine run measured, per run and per case.

Why: the engine writes it, and host tools (verify-load, the inference benchmark) read it back;
one description keeps the JSON keys in one place. Stdlib only, so the host needs no torch. The
keys are the file's contract: `to_dict` writes exactly them (optional per-case keys only when
known), `from_dict` ignores keys it does not know and defaults missing ones, so an older or newer
engine's file still reads.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

PHASES = ("read", "preprocess", "network", "export", "write")  # per-case seconds, in run order


@dataclass
class CaseRecord:
    """One case: "ok" or "failed" (with `error`); what is known depends on how far it got."""
    name: str
    status: str = "ok"
    seconds: dict[str, float] = field(default_factory=dict)  # PHASES, plus e.g. compute_total
    error: str | None = None
    shape: list[int] | None = None           # the input's array shape (z, y, x)
    spacing: list[float] | None = None       # its spacing (z, y, x), mm
    target_shape: list[int] | None = None    # the shape after resampling to the model's spacing
    mode: str | None = None                  # "gpu", "cpu" or the out-of-memory fallback taken
    peak_gpu_bytes: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def fail(self, error: str) -> None:
        self.status, self.error = "failed", error

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, d: dict) -> CaseRecord:
        d = d if isinstance(d, dict) else {}
        known = {f.name for f in fields(cls)}
        rec = cls(**{"name": "", **{k: v for k, v in d.items() if k in known}})
        rec.seconds = rec.seconds if isinstance(rec.seconds, dict) else {}
        return rec


@dataclass
class RunRecord:
    """The whole run: device, knobs, start-up and total time, host memory, and every case."""
    device: str = ""
    tta: bool = True
    batch_size: int = 0
    threads: int = 0
    startup_seconds: float = 0.0
    total_seconds: float = 0.0
    rss_before_cases_bytes: int = 0            # the process before any case: estimates come on top
    host_estimate_bytes: dict[str, int] = field(default_factory=dict)  # case name -> admission estimate
    peak_rss_bytes: int = 0
    cases: list[CaseRecord] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseRecord]:
        return [c for c in self.cases if not c.ok]

    def case(self, name: str) -> CaseRecord | None:
        return next((c for c in self.cases if c.name == name), None)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["cases"] = [c.to_dict() for c in self.cases]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RunRecord:
        d = d if isinstance(d, dict) else {}
        known = {f.name for f in fields(cls)} - {"cases"}
        run = cls(**{k: v for k, v in d.items() if k in known})
        cases = d.get("cases")
        run.cases = [CaseRecord.from_dict(c) for c in cases] if isinstance(cases, list) else []
        if not isinstance(run.host_estimate_bytes, dict):
            run.host_estimate_bytes = {}
        return run

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))


def read(path: Path) -> RunRecord:
    """The record in `path` (raises OSError / ValueError when it is missing or not JSON)."""
    return RunRecord.from_dict(json.loads(Path(path).read_text()))
