"""`make validate`: check OUTPUT against INPUT (names, geometry, type, labels), score it against LABELS.

`python -m amoskit.verbs.validate INPUT OUTPUT [LABELS]`; exit 1 on any fail, 2 on bad arguments.
The checks themselves are amoskit.verify.validation's, the ones verify-load applies too. Besides
the table, one self-contained HTML page (default OUTPUT.validate.html, beside the folder: the
folder itself must hold only the segmentations) shows each case's overlay, legend, Dice and NSD.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from amoskit import contract
from amoskit.verify import html_report, preview
from amoskit.verify.report import OUTPUTS, Verdict
from amoskit.verify.validation import Report, list_cases, validate


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


def as_verdict(report: Report, labels: Path | None) -> Verdict:
    """The report in the verdict's form, so the page reads like verify-load's."""
    v = Verdict(report.output_dir, "", title="validate")
    for p in report.set_problems:
        v.add(OUTPUTS, "output folder", "fail", p)
    for c in report.cases:
        v.add(OUTPUTS, c.case, c.status, c.detail())
        view = v.case(c.case)
        view.status, view.detail, view.dice, view.nsd = c.status, c.detail(), c.dice, c.nsd
    if labels is not None:
        v.scoring = report.scoring()
    v.notes.append(f"Inputs: {report.input_dir}; outputs: {report.output_dir}; references: "
                   f"{report.labels_dir or 'none given'}")
    return v


def write_html(report: Report, inputs: Path, labels: Path | None, html_path: Path) -> None:
    """Pictures drawn into a temporary folder, embedded in the page, the folder removed."""
    v = as_verdict(report, labels)
    names = {value: name for name, value in report.allowed_labels.items()}
    out = Path(report.output_dir)
    with tempfile.TemporaryDirectory(prefix="amoskit-validate-") as tmp:
        for img in list_cases(inputs):
            if not (out / img.name).exists() or v.case(img.name).status == "fail":
                continue
            ref = labels / img.name if labels is not None else None
            try:
                pic = preview.write_preview(img, out / img.name, ref,
                                            Path(tmp) / preview.png_name(img.name), names=names)
            except (RuntimeError, ValueError) as exc:
                v.notes.append(f"{img.name}: picture not drawn ({exc})")
                continue
            view = v.case(img.name)
            view.picture, view.slices, view.slices_by, view.legend = (
                str(pic.png), pic.slices, pic.chosen_by, pic.legend)
        text = html_report.render(v)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    part = html_path.with_name(f".{html_path.name}.partial-{os.getpid()}")
    part.write_text(text)
    os.replace(part, html_path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", type=Path)
    ap.add_argument("output", type=Path)
    ap.add_argument("labels", type=Path, nargs="?")
    ap.add_argument("--dataset-json", type=Path, default=None,
                    help="model's dataset.json (allowed labels; default AMOS 0..15)")
    ap.add_argument("--json", type=Path, default=None, help="also write the report as JSON")
    ap.add_argument("--html", type=Path, default=None,
                    help="the report page with the pictures (default: OUTPUT.validate.html, "
                         "beside the output folder)")
    ap.add_argument("--nsd-tolerance-mm", type=float, default=contract.NSD_TOLERANCE_MM,
                    help=f"NSD tolerance in mm (default {contract.NSD_TOLERANCE_MM:g}: "
                         f"{contract.NSD_TOLERANCE_SOURCE})")
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
        report = validate(args.input, args.output, labels, args.dataset_json,
                          args.nsd_tolerance_mm)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    html_path = args.html or args.output.parent / f"{args.output.resolve().name}.validate.html"
    write_html(report, args.input, labels, html_path)
    print(f"report page: {html_path} (open it in a browser)")
    return 1 if report.status == "fail" else 0


if __name__ == "__main__":
    sys.exit(main())
