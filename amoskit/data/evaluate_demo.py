"""Per-organ Dice of a model on held-out phantoms, run through the real `run_inference.py`.

Why: the demo model's quality claim (mean Dice >= 0.90 over the 15 organs, none below 0.75) must
come from the same code path the submission image runs, on phantoms training never saw.

    python -m amoskit.data.evaluate_demo --count 10            # weights/, seeds 9000..9009
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from amoskit import REPO
from amoskit.data.samples import make_samples
from amoskit import metrics
from amoskit.contract import AMOS_LABELS

PASS_MEAN, PASS_MIN = 0.90, 0.75


def dice_table(pred_dir: Path, ref_dir: Path) -> dict:
    """{label id: [dice per case]} over the files present in both folders."""
    scores = {v: [] for v in AMOS_LABELS if v}
    for ref in sorted(ref_dir.glob("*.nii.gz")):
        per_label = metrics.dice_per_label(metrics.read_labels(pred_dir / ref.name),
                                           metrics.read_labels(ref), labels=list(scores))
        for label, d in per_label.items():
            scores[label].append(d)
    return {label: vals for label, vals in scores.items() if vals}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "weights")
    ap.add_argument("--count", type=int, default=10)
    ap.add_argument("--seed", type=int, default=9000)
    ap.add_argument("--tta", default="1")
    ap.add_argument("--json", type=Path, help="also write the scores here")
    args = ap.parse_args(argv)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_samples(tmp / "cases", args.count, seed0=args.seed)
        env = {**os.environ, "INPUT_DIR": str(tmp / "cases" / "images"), "OUTPUT_DIR": str(tmp / "pred"),
               "MODEL_DIR": str(args.model), "TTA": args.tta}
        proc = subprocess.run([sys.executable, str(REPO / "inference" / "run_inference.py")], env=env)
        if proc.returncode != 0:
            console.print(f"[red]run_inference.py failed ({proc.returncode})")
            return proc.returncode
        scores = dice_table(tmp / "pred", tmp / "cases" / "labels")
    names = AMOS_LABELS
    table = Table(title=f"Dice on {args.count} held-out phantoms (seeds {args.seed}..{args.seed + args.count - 1}, "
                        f"TTA {'on' if args.tta != '0' else 'off'})")
    for col in ("label", "organ", "mean Dice", "min Dice"):
        table.add_column(col, justify="right" if col != "organ" else "left")
    means = {}
    for label, vals in scores.items():
        means[label] = float(np.mean(vals))
        table.add_row(str(label), names[label], f"{means[label]:.3f}", f"{min(vals):.3f}")
    overall = float(np.mean(list(means.values())))
    worst = min(means, key=means.get)
    ok = overall >= PASS_MEAN and means[worst] >= PASS_MIN
    table.add_section()
    table.add_row("", "mean over 15 organs", f"{overall:.3f}", "")
    console.print(table)
    console.print(f"{'PASS' if ok else 'FAIL'}: mean {overall:.3f} (bar {PASS_MEAN}), lowest organ "
                  f"{names[worst]} {means[worst]:.3f} (bar {PASS_MIN})")
    if args.json:
        args.json.write_text(json.dumps({"per_label": means, "mean": overall, "pass": ok}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
