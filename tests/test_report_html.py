"""The HTML report a person looks at, rendered in a real browser (headless Chromium), and the choice
of the slices it shows.

`make validate` writes the same page verify-load writes (amoskit.verify.html_report), so the page
is tested here on real NIfTI cases without Docker; test_package_roundtrip renders verify-load's.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from amoskit.verify import html_report, preview
from amoskit.verify.report import Verdict
from browser import elements, not_blank, rendered_dom, screenshot, text_of
from conftest import tool

pytestmark = [pytest.mark.verify]


def write_like(arr: np.ndarray, like: sitk.Image, path: Path) -> None:
    img = sitk.GetImageFromArray(arr)
    img.CopyInformation(like)
    sitk.WriteImage(img, str(path))


@pytest.fixture(scope="module")
def validated(tmp_path_factory, sample_cases):
    """make validate on the sample cases, one prediction damaged: the spleen moved 3 voxels in z
    and the liver cut out of a few slices; the other case predicted perfectly."""
    root = tmp_path_factory.mktemp("validate-html")
    images, labels, out = sample_cases / "images", sample_cases / "labels", root / "output"
    out.mkdir()
    cases = sorted(p for p in images.iterdir() if p.name.endswith(".nii.gz"))
    damaged = cases[0].name
    for case in cases:
        ref_img = sitk.ReadImage(str(labels / case.name))
        ref = sitk.GetArrayFromImage(ref_img)
        pred = ref.copy()
        if case.name == damaged:
            spleen = ref == 1
            pred[spleen] = 0
            pred[np.roll(spleen, 3, axis=0) & (pred == 0)] = 1
            zs = np.flatnonzero((ref == 6).any(axis=(1, 2)))
            cut = zs[len(zs) // 2: len(zs) // 2 + 3]
            sl = pred[cut]
            sl[sl == 6] = 0
            pred[cut] = sl
        write_like(pred.astype(np.uint8), ref_img, out / case.name)
    page = root / "report.html"
    proc = subprocess.run([*tool("amoskit.verbs.validate"), images, out, labels, "--html", page],
                          capture_output=True, text=True, timeout=600)
    return {"proc": proc, "page": page, "cases": [c.name for c in cases], "damaged": damaged,
            "root": root, "output": out}


def test_validate_writes_a_self_contained_page_and_leaves_no_temp_folder(validated):
    proc = validated["proc"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"report page: {validated['page']}" in proc.stdout
    page = validated["page"].read_text()
    # nothing fetched: every picture inside, no external address or file reference
    srcs = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(srcs) == len(validated["cases"]) and all(s.startswith("data:image/png;base64,")
                                                        for s in srcs)
    assert not re.search(r'\b(href|src)="(https?:|file:|/)', page)
    # the output folder holds the segmentations only; the pictures' temp folder is gone
    assert sorted(p.name for p in validated["output"].iterdir()) == validated["cases"]
    assert not list(Path("/tmp").glob("amoskit-validate-*"))


def test_page_renders_in_chromium_with_verdict_legend_and_scores(validated, tmp_path):
    dom = rendered_dom(validated["page"])
    text = text_of(dom)
    assert re.search(r"Verdict: (PASS|WARN) 0 failed", text), text[:400]
    # per case: the legend names the organs in the case, in AMOS22's words, with their colours
    legends = elements(dom, "ul", "legend")
    assert len(legends) == len(validated["cases"])
    for organ in ("spleen", "liver", "right kidney"):
        assert organ in legends[0], legends[0]
    # the organ tables have DSC and NSD columns; the damaged case scores below 1 on both
    tables = elements(dom, "table", "organs")
    assert len(tables) == len(validated["cases"])
    damaged_table = tables[validated["cases"].index(validated["damaged"])]
    assert damaged_table.startswith("organ DSC NSD")
    spleen = re.search(r"spleen (\d\.\d{3}) (\d\.\d{3})", damaged_table)
    assert spleen and 0 < float(spleen[1]) < 1 and 0 < float(spleen[2]) < 1, damaged_table
    perfect = tables[1 - validated["cases"].index(validated["damaged"])]
    assert "mean 1.000 1.000" in perfect, perfect
    assert "NSD: normalized surface Dice at" in text and " mm " in text
    # the pictures show where the damaged case is wrong
    assert "chosen where prediction and reference disagree most" in text
    px = screenshot(validated["page"], tmp_path / "page.png")
    seen = not_blank(px)
    assert seen["non_white"] > 0.05 and seen["coloured"] > 0.001 and seen["grey_levels"] > 64, seen


def test_slices_are_where_prediction_and_reference_disagree_most():
    ref = np.zeros((40, 16, 16), np.uint8)
    ref[5:35, 4:12, 4:12] = 1
    pred = ref.copy()
    pred[30, 4:12, 4:12] = 0          # 64 voxels wrong
    pred[10, 4:8, 4:12] = 0           # 32 wrong
    pred[11, 4:6, 4:12] = 0           # 16 wrong, but next to 10: too close to show both
    pred[20, 4:5, 4:12] = 0           # 8 wrong
    zs, why = preview.pick_slices(pred, ref)
    assert why == "disagreement" and zs == [10, 20, 30]
    zs, why = preview.pick_slices(ref, ref)          # perfect: the slices with the most organs
    assert why == "organs" and len(zs) == 3 and all(5 <= z < 35 for z in zs)
    two = ref.copy()
    two[18:22, 1:3, 1:3] = 2
    zs, why = preview.pick_slices(two, None)
    assert why == "organs" and any(18 <= z < 22 for z in zs)
    zs, why = preview.pick_slices(np.zeros_like(ref), None)
    assert why == "range" and zs == [8, 20, 31]


def test_markdown_links_the_same_pictures(tmp_path):
    png = tmp_path / "verify" / "previews" / "amos 0001.png"
    png.parent.mkdir(parents=True)
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    v = Verdict(str(tmp_path / "team-task1.tar.gz"), "team")
    c = v.case("amos 0001.nii.gz")
    c.picture, c.dice, c.nsd = str(png), {"spleen": 0.9}, {"spleen": 0.8}
    md = v.markdown(tmp_path)
    assert "![amos 0001.nii.gz" in md and "(verify/previews/amos%200001.png)" in md
    assert "| spleen | 0.900 | 0.800 |" in md
    page = html_report.render(v)
    assert "data:image/png;base64," in page and "spleen" in page
