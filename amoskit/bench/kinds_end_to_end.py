"""Every nnU-Net folder kind of the zoo through the whole job: make build, run, package, verify-load.

Why: "each kind runs end to end from a clean clone" is a claim about the user's four commands, not
about the engine alone. For each kind (and the ENGINE=nnunet image of a cascade with its trainer
handed in as TRAINER_CODE) this runs the real make targets on the zoo's inputs and labels and
prints one row: the engine make build chose, each step's exit status and seconds, verify-load's
verdict and the image size. Extra arguments go to every make call (offline builds:
TORCH_VERSION=... TORCH_INDEX_URL= WHEELHOUSE=... BASE_IMAGE=...).

    python -m amoskit.bench.kinds_end_to_end [--kind 2d ...] [--cases 1] [MAKEVAR=value ...]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from amoskit import REPO
from amoskit.bench import nnunet_kinds

TEAM = "endtoend"
STEPS = ("build", "run", "package", "verify-load")
FALLBACK = "3d_cascade_fullres+ENGINE=nnunet"
TRAINER = REPO / "amoskit" / "devtools" / "nnUNetTrainer_zoo.py"


@dataclass
class Row:
    kind: str
    engine: str = "-"
    steps: dict = field(default_factory=dict)    # step -> (exit status, seconds)
    verdict: str = "-"
    image_mb: float = 0.0
    log: str = ""


def _make(target: str, variables: list[str], log: Path) -> tuple[int, float, str]:
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.run(["make", "--no-print-directory", target, *variables], cwd=REPO, stdout=fh,
                              stderr=subprocess.STDOUT, env={**os.environ, "COLUMNS": "200"}, timeout=3600)
    return proc.returncode, time.perf_counter() - t0, log.read_text(errors="replace")


def first_cases(zoo: dict, tmp: Path, n: int) -> dict:
    """The zoo with only its first n inputs (and their labels), copied into tmp."""
    inputs, labels = tmp / "inputs", tmp / "labels"
    for d in (inputs, labels):
        d.mkdir(parents=True, exist_ok=True)
    for case in sorted(Path(zoo["inputs"]).glob("*.nii.gz"))[:n]:
        shutil.copy(case, inputs / case.name)
        if (Path(zoo["inputs_labels"]) / case.name).is_file():
            shutil.copy(Path(zoo["inputs_labels"]) / case.name, labels / case.name)
    return {**zoo, "inputs": str(inputs), "inputs_labels": str(labels)}


def one_kind(zoo: dict, kind: str, tmp: Path, extra: list[str]) -> Row:
    base, tag = kind.split("+")[0], re.sub(r"\W", "_", kind)
    model, folds, _ = nnunet_kinds.model_for(zoo, base, tmp)
    dist, out = tmp / f"dist-{tag}", tmp / f"out-{tag}"
    common = [f"TEAMNAME={TEAM}", f"INPUT={zoo['inputs']}", f"LABELS={zoo['inputs_labels']}", f"DIST={dist}",
              f"OUTPUT={out}"]
    build = [f"WEIGHTS={model}", f"FOLDS={folds}"]
    if kind == FALLBACK:
        build += ["ENGINE=nnunet", f"TRAINER_CODE={TRAINER}"]
    row = Row(kind)
    for step in STEPS:
        rc, secs, text = _make(step, common + (build if step == "build" else []) + extra, tmp / f"{tag}-{step}.log")
        row.steps[step] = (rc, secs)
        row.log += f"\n--- {step} ---\n" + text[-3000:]
        if step == "build":
            m = re.search(r"^engine: (\w+)", text, re.M)
            row.engine = m.group(1) if m else "?"
            size = subprocess.run(["docker", "image", "inspect", f"{TEAM}:latest", "--format", "{{.Size}}"],
                                  capture_output=True, text=True).stdout.strip()
            row.image_mb = int(size) / 1e6 if size.isdigit() and rc == 0 else 0.0  # not an older build's
        if step == "verify-load":
            m = re.search(r"\bverdict\b[\s│┃|*]+(PASS|FAIL|WARN)", text, re.I)
            row.verdict = m.group(1).upper() if m else ("?" if rc else "PASS")
        if rc != 0:
            break
    return row


def table(rows: list[Row]) -> Table:
    t = Table(title="every nnU-Net kind through make build, run, package, verify-load (zoo inputs and labels)")
    t.add_column("kind")
    t.add_column("engine")
    for step in STEPS:
        t.add_column(f"{step} s", justify="right")
    t.add_column("verify-load")
    t.add_column("image MB", justify="right")
    for r in rows:
        cells = []
        for step in STEPS:
            rc, secs = r.steps.get(step, (None, 0.0))
            cells.append("-" if rc is None else (f"{secs:.0f}" if rc == 0 else f"FAILED ({rc}) {secs:.0f}"))
        t.add_row(r.kind, r.engine, *cells, r.verdict, f"{r.image_mb:,.0f}" if r.image_mb else "-")
    return t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", action="append", choices=(*nnunet_kinds.ALL_KINDS, FALLBACK),
                   help="only these kinds (repeatable; default all)")
    p.add_argument("--cases", type=int, default=0, help="only the zoo's first N inputs (0: all)")
    p.add_argument("make_vars", nargs="*", help="VAR=value passed to every make call")
    a = p.parse_args(argv)
    kinds = a.kind or (*nnunet_kinds.ALL_KINDS, FALLBACK)
    zoo = nnunet_kinds.with_extra_kinds(nnunet_kinds.load_zoo(), kinds)
    console = Console(width=200) if not Console().is_terminal else Console()
    rows = []
    with tempfile.TemporaryDirectory(prefix="amos-e2e-") as tmp:
        if a.cases:
            zoo = first_cases(zoo, Path(tmp) / "first", a.cases)
        for kind in kinds:
            console.print(f"[bold]{kind}[/] ...")
            rows.append(one_kind(zoo, kind, Path(tmp), a.make_vars))
            if any(rc for rc, _ in rows[-1].steps.values()):
                console.print(rows[-1].log[-4000:], markup=False)
    version = (REPO / "VERSION").read_text().strip()
    subprocess.run(["docker", "image", "rm", "-f", f"{TEAM}:latest", f"{TEAM}:{version}"], capture_output=True)
    console.print(table(rows))
    return 1 if any(any(rc for rc, _ in r.steps.values()) or len(r.steps) < len(STEPS) for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
