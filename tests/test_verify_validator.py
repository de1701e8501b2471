"""validate_outputs on real NIfTI folders (written with SimpleITK): every defect caught by name.

Fast, no Docker: wrong geometry, float output, labels outside 0..15, a missing or extra file, an
unreadable output, all-background, Dice against a reference; and the CLI's exit statuses.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import tool

from amoskit.verify import validation as vo

pytestmark = pytest.mark.verify

SPACING = (0.8, 0.75, 2.5)
ORIGIN = (12.5, -40.0, 7.0)
DIRECTION = (-1, 0, 0, 0, -1, 0, 0, 0, 1)
CASES = ("Case 01.nii.gz", "amos.v2.NII.GZ")


def image(arr: np.ndarray, like: sitk.Image | None = None) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    if like is not None:
        img.CopyInformation(like)
    else:
        img.SetSpacing(SPACING)
        img.SetOrigin(ORIGIN)
        img.SetDirection(DIRECTION)
    return img


def write(img: sitk.Image, path: Path) -> None:
    """SimpleITK picks its writer by a lower-case suffix: write, then rename to the real name."""
    tmp = path.with_name("tmp-write.nii.gz")
    sitk.WriteImage(img, str(tmp))
    tmp.rename(path)


def reference_labels(shape=(20, 40, 36)) -> np.ndarray:
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    lab = np.zeros(shape, np.uint8)
    lab[(z - 10) ** 2 + (y - 18) ** 2 + (x - 15) ** 2 < 64] = 6     # liver
    lab[(z - 10) ** 2 + (y - 25) ** 2 + (x - 28) ** 2 < 16] = 1     # spleen
    return lab


@pytest.fixture
def folders(tmp_path):
    """input/, labels/ and a correct output/ for two cases."""
    for sub in ("input", "labels", "output"):
        (tmp_path / sub).mkdir()
    lab = reference_labels()
    rng = np.random.default_rng(0)
    for name in CASES:
        ct = (rng.normal(0, 20, lab.shape) + 150 * (lab > 0)).astype(np.int16)
        img = image(ct)
        write(img, tmp_path / "input" / name)
        write(image(lab, img), tmp_path / "labels" / name)
        write(image(lab, img), tmp_path / "output" / name)
    return tmp_path


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*tool("amoskit.verbs.validate"), *map(str, args)],
                          capture_output=True, text=True, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def case(report: vo.Report, name: str) -> vo.CaseResult:
    return next(c for c in report.cases if c.case == name)


def test_correct_outputs_pass_with_perfect_dice(folders):
    rep = vo.validate(folders / "input", folders / "output", folders / "labels")
    assert rep.status == "pass", rep.to_json()
    for c in rep.cases:
        assert c.dice == {"spleen": 1.0, "liver": 1.0}
        assert c.labels_found == [0, 1, 6]
    proc = run_cli(folders / "input", folders / "output", folders / "labels")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mean Dice 1.000" in proc.stdout


def test_dice_reflects_a_worse_prediction(folders):
    out = folders / "output" / CASES[0]
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    arr[arr == 1] = 0                                   # spleen missed entirely
    write(image(arr, sitk.ReadImage(str(out))), out)
    c = case(vo.validate(folders / "input", folders / "output", folders / "labels"), CASES[0])
    assert c.dice["spleen"] == 0.0 and c.dice["liver"] == 1.0
    assert c.mean_dice == pytest.approx(0.5)


@pytest.mark.parametrize("what,change,expect", [
    ("spacing", lambda img: img.SetSpacing((0.8, 0.75, 3.0)), "spacing differs"),
    ("origin", lambda img: img.SetOrigin((12.5, -40.0, 9.0)), "origin differs"),
    ("direction", lambda img: img.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1)), "direction differs"),
])
def test_wrong_geometry_fails(folders, what, change, expect):
    out = folders / "output" / CASES[1]
    img = sitk.ReadImage(str(out))
    change(img)
    write(img, out)
    rep = vo.validate(folders / "input", folders / "output", folders / "labels")
    c = case(rep, CASES[1])
    assert c.status == "fail" and any(expect in p for p in c.problems), c.problems
    assert case(rep, CASES[0]).status == "pass"
    proc = run_cli(folders / "input", folders / "output")
    assert proc.returncode == 1 and expect in proc.stdout


def test_wrong_size_fails(folders):
    out = folders / "output" / CASES[0]
    img = sitk.ReadImage(str(out))
    write(image(reference_labels((20, 40, 35)), None), out)
    c = case(vo.validate(folders / "input", folders / "output"), CASES[0])
    assert c.status == "fail" and any(p.startswith("size") for p in c.problems), c.problems
    del img


def test_float_output_fails(folders):
    out = folders / "output" / CASES[0]
    img = sitk.ReadImage(str(out))
    write(sitk.Cast(img, sitk.sitkFloat32), out)
    c = case(vo.validate(folders / "input", folders / "output"), CASES[0])
    assert c.status == "fail"
    assert any("not an integer label map" in p for p in c.problems), c.problems


@pytest.mark.parametrize("bad", [16, 255])
def test_labels_outside_0_to_15_fail(folders, bad):
    out = folders / "output" / CASES[0]
    img = sitk.ReadImage(str(out))
    arr = sitk.GetArrayFromImage(img)
    arr[0, 0, :3] = bad
    write(image(arr, img), out)
    c = case(vo.validate(folders / "input", folders / "output"), CASES[0])
    assert c.status == "fail"
    assert any(f"labels [{bad}] are outside" in p and "0..15" in p for p in c.problems), c.problems


def test_labels_checked_against_the_models_dataset_json(folders, tmp_path):
    ds = tmp_path / "dataset.json"
    ds.write_text(json.dumps({"labels": {"background": 0, "spleen": 1}}))
    c = case(vo.validate(folders / "input", folders / "output", dataset_json=ds), CASES[0])
    assert c.status == "fail" and any("labels [6]" in p and "0..1" in p for p in c.problems)


def test_missing_output_and_extra_file_fail(folders):
    (folders / "output" / CASES[1]).unlink()
    (folders / "output" / ".partial-123-x.nii.gz").write_bytes(b"half")
    rep = vo.validate(folders / "input", folders / "output", folders / "labels")
    assert case(rep, CASES[1]).problems == ["no output file"]
    assert any("extra file" in p and ".partial-123-x.nii.gz" in p for p in rep.set_problems)
    assert rep.status == "fail"
    proc = run_cli(folders / "input", folders / "output", folders / "labels")
    assert proc.returncode == 1


def test_unreadable_output_fails(folders):
    (folders / "output" / CASES[0]).write_bytes(b"\x1f\x8b not really gzip")
    c = case(vo.validate(folders / "input", folders / "output"), CASES[0])
    assert c.status == "fail" and c.problems[0].startswith("output unreadable")


def test_all_background_warns_but_passes(folders):
    out = folders / "output" / CASES[0]
    img = sitk.ReadImage(str(out))
    write(image(np.zeros(sitk.GetArrayFromImage(img).shape, np.uint8), img), out)
    rep = vo.validate(folders / "input", folders / "output")
    c = case(rep, CASES[0])
    assert c.status == "warn" and "all background" in c.warnings[0]
    assert rep.status == "warn"
    assert run_cli(folders / "input", folders / "output").returncode == 0


def test_cli_refuses_a_missing_input_folder(tmp_path):
    proc = run_cli(tmp_path / "nope", tmp_path)
    assert proc.returncode == 2
    assert "input folder" in proc.stderr and "nope" in proc.stderr


def test_cli_writes_json_report(folders, tmp_path):
    js = tmp_path / "report.json"
    proc = subprocess.run([*tool("amoskit.verbs.validate"), str(folders / "input"),
                           str(folders / "output"), str(folders / "labels"), "--json", str(js)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(js.read_text())
    assert data["status"] == "pass" and len(data["cases"]) == 2
