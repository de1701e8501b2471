"""Step 5 of verify-load: the outputs of both runs validated as the organisers will score them.

Why: a run that exits 0 can still lose a case, write floats or shift the origin; and the run
under the server's limits must give the same segmentation as the organisers' line. The labels
allowed are those of the model's own dataset.json, read from the image in step 2.
"""
from __future__ import annotations

import json
from pathlib import Path

from amoskit.metrics import folder_agreement
from amoskit.verify import validation
from amoskit.verify.image_checks import Contents
from amoskit.verify.report import OUTPUTS, Verdict
from amoskit.verify.runs import Run

SAME_VOXELS = 0.999      # the two runs' outputs agree on at least this fraction of voxels


def model_dataset_json(contents: Contents | None, work: Path) -> Path | None:
    """The image's dataset.json written to the work folder, for validate to read its labels."""
    if contents is None or not contents.dataset_json:
        return None
    path = work / "dataset.json"
    path.write_text(json.dumps(contents.dataset_json))
    return path


def check_organisers_outputs(samples: Path, labels: Path | None, run: Run,
                             dataset_json: Path | None, work: Path, v: Verdict) -> list[str]:
    """The output folder as a whole, then one row per case; returns the case names."""
    rep = validation.validate(samples, run.output, labels, dataset_json)
    (work / "validate-organisers.json").write_text(json.dumps(rep.to_json(), indent=2))
    for p in rep.set_problems:
        v.add(OUTPUTS, "output folder", "fail", p)
    if not rep.set_problems:
        v.add(OUTPUTS, "output folder", "pass", f"one output per input ({len(rep.cases)}), same "
                                                f"names, no extra files")
    for c in rep.cases:
        v.add(OUTPUTS, c.case, c.status, c.detail(), dice=c.dice, nsd=c.nsd)
        view = v.case(c.case)
        view.status, view.detail, view.dice, view.nsd = c.status, c.detail(), c.dice, c.nsd
    if labels is not None:
        v.scoring = rep.scoring()
    return [c.case for c in rep.cases]


def check_limits_outputs(samples: Path, labels: Path | None, first: Run, second: Run,
                         names: list[str], dataset_json: Path | None, v: Verdict) -> None:
    """The server-limits run's outputs: valid, and the same as the organisers' run."""
    rep = validation.validate(samples, second.output, labels, dataset_json)
    bad = [c.case for c in rep.cases if c.status == "fail"] + rep.set_problems
    if bad:
        v.add(OUTPUTS, "limits run outputs", "fail", f"{len(bad)} problem(s): "
                                                     f"{', '.join(bad[:3])}")
        return
    agree = folder_agreement(first.output, second.output, names)
    v.add(OUTPUTS, "limits run outputs", "pass" if agree is None or agree >= SAME_VOXELS
          else "warn", "valid" + (f"; {agree * 100:.3f}% of voxels equal to the organisers' run"
                                  if agree is not None else ""))


def check_outputs(samples: Path, labels: Path | None, runs: dict[str, Run],
                  contents: Contents | None, work: Path, v: Verdict) -> dict[int, str]:
    """Step 5; returns the model's organ names by label (for the pictures' legend)."""
    ds = model_dataset_json(contents, work)
    names = check_organisers_outputs(samples, labels, runs["organisers"], ds, work, v)
    check_limits_outputs(samples, labels, runs["organisers"], runs["limits"], names, ds, v)
    return {value: name for name, value in validation.load_label_names(ds).items()}
