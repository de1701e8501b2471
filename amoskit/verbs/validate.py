"""`make validate`: check OUTPUT against INPUT (names, geometry, type, labels), score it against LABELS.

`python -m amoskit.verbs.validate INPUT OUTPUT [LABELS]`; exit 1 on any fail, 2 on bad arguments.
The checks themselves are amoskit.verify.validation's, the ones verify-load applies too.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from amoskit.verify.validation import Report, validate


def print_report(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table
    style = {"pass": "green", "warn": "yellow", "fail": "red"}
    t = Table(title=f"outputs in {report.output_dir}")
    t.add_column("case")
    t.add_column("status")
    t.add_column("detail", overflow="fold")
    for p in report.set_problems:
        t.add_row("(folder)", "[red]fail", p)
    for c in report.cases:
        t.add_row(c.case, f"[{style[c.status]}]{c.status}", c.detail())
    t.add_row("[bold]overall", f"[bold {style[report.status]}]{report.status}",
              f"{len(report.cases)} case(s)")
    Console().print(t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("labels", type=Path, nargs="?")
    ap.add_argument("--dataset-json", type=Path, default=None,
                    help="model's dataset.json (allowed labels; default AMOS 0..15)")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    args = ap.parse_args(argv)
    if not args.input.is_dir():
        print(f"error: input folder {args.input} does not exist: pass the folder of *.nii.gz "
              f"images the outputs were made from", file=sys.stderr)
        return 2
    labels = args.labels if args.labels is not None and args.labels.is_dir() else None
    if args.labels is not None and labels is None:
        print(f"warning: labels folder {args.labels} does not exist: Dice skipped",
              file=sys.stderr)
    try:
        report = validate(args.input, args.output, labels, args.dataset_json)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.status == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
