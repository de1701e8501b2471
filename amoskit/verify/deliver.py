"""Step 6 of verify-load: what a person should look at and what to send.

Why: a verdict of PASS says the file works, not that the segmentation looks right: one PNG per
case lets a person see it. The submission is the tarball and a short paper, emailed.
"""
from __future__ import annotations

from pathlib import Path

from amoskit.contract import SubmissionFiles
from amoskit.verify import validation
from amoskit.verify.report import DELIVER, Verdict

EMAIL = "miccai.amos22@gmail.com"


def check_previews(samples: Path, labels: Path | None, out: Path, dest: Path,
                   v: Verdict, names: dict[int, str] | None = None) -> None:
    """One PNG per case that has an output (image, prediction, reference when there is one),
    its legend naming organs by `names` (label -> name); each case's view gets its picture."""
    from amoskit.verify import preview
    made = []
    for img in validation.list_cases(samples):
        pred = out / img.name
        if not pred.exists():
            continue
        ref = labels / img.name if labels is not None else None
        png = dest / preview.png_name(img.name)
        try:
            pic = preview.write_preview(img, pred, ref, png, names=names)
            made.append(png)
            view = v.case(img.name)
            view.picture, view.slices, view.slices_by = str(png), pic.slices, pic.chosen_by
            view.legend = pic.legend
        except (RuntimeError, ValueError) as exc:
            v.add(DELIVER, f"preview {img.name}", "warn", f"not drawn: {exc}")
    if made:
        v.add(DELIVER, "previews", "pass", f"{len(made)} PNG(s) in {dest}, also inside the "
                                           f"HTML verdict: open it and look",
              files=[str(p) for p in made])


def check_short_paper(files: SubmissionFiles, v: Verdict) -> None:
    """The paper beside the tarball, and the reminder of what to email."""
    pdf = files.paper
    if pdf.exists():
        v.add(DELIVER, "short paper", "pass", f"{pdf.name} is beside the tarball")
    else:
        v.add(DELIVER, "short paper", "warn", f"{pdf.name} not found beside the tarball: the "
                                              f"submission needs the short paper (MICCAI "
                                              f"template)")
    v.reminder = (f"email {EMAIL}: {files.tarball.name} (as a cloud-drive link; it is too big "
                  f"to attach) and {pdf.name} (the short paper)")
