"""Check a folder of predicted label maps against the inputs they came from (and labels if any).

Why: the organisers score whatever lands in /output; a missing case, a float image, a shifted
origin or a label the model does not have costs points silently. Used by `make validate`
(amoskit.verbs.validate) and by verify-load on the container's output. Checks per case: exactly one output with the same name
(no extra files), readable, same size/origin/spacing/direction as the input, an integer pixel
type, labels within the model's dataset.json (AMOS: 0..15), a warning when everything is
background, and Dice and normalized surface Dice (NSD, amoskit.surface_dice) per organ against a
reference label map of the same name: AMOS22 ranks on both.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from amoskit import contract, metrics, surface_dice

GEOMETRY_ATOL = 1e-4
INTEGER_TYPES = {sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                 sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64}
RANK = {"pass": 0, "warn": 1, "fail": 2}


@dataclass
class CaseResult:
    """Everything checked for one input case."""
    case: str
    status: str = "pass"
    problems: list[str] = field(default_factory=list)     # fail reasons
    warnings: list[str] = field(default_factory=list)
    dtype: str = ""
    labels_found: list[int] = field(default_factory=list)
    dice: dict[str, float] = field(default_factory=dict)  # label name -> Dice
    mean_dice: float | None = None
    nsd: dict[str, float] = field(default_factory=dict)   # label name -> NSD at the tolerance
    mean_nsd: float | None = None

    def fail(self, msg: str) -> None:
        self.problems.append(msg)
        self.status = "fail"

    def warn(self, msg: str) -> None:
        self.warnings.append(msg)
        if self.status == "pass":
            self.status = "warn"

    def detail(self) -> str:
        parts = self.problems + self.warnings
        if self.mean_dice is not None:
            worst = min(self.dice.items(), key=lambda kv: kv[1]) if self.dice else None
            parts.append(f"mean Dice {self.mean_dice:.3f}" +
                         (f" (lowest {worst[0]} {worst[1]:.3f})" if worst else ""))
        if self.mean_nsd is not None:
            parts.append(f"mean NSD {self.mean_nsd:.3f}")
        if not self.problems and self.dtype:
            parts.append(f"{self.dtype}, labels {self.labels_found}")
        return "; ".join(parts)


@dataclass
class Report:
    """The whole folder: set-level problems plus one result per input case."""
    input_dir: str
    output_dir: str
    labels_dir: str | None
    allowed_labels: dict[str, int]
    set_problems: list[str] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    nsd_tolerance_mm: float = contract.NSD_TOLERANCE_MM

    def scoring(self) -> str:
        """How the scores were computed, said wherever they are shown."""
        return (f"DSC: Dice per organ. NSD: normalized surface Dice at {self.nsd_tolerance_mm:g} mm "
                f"({contract.NSD_TOLERANCE_SOURCE}). An organ absent from both prediction and "
                f"reference is not scored; present in only one it scores 0.")

    @property
    def status(self) -> str:
        worst = "fail" if self.set_problems else "pass"
        for c in self.cases:
            if RANK[c.status] > RANK[worst]:
                worst = c.status
        return worst

    def to_json(self) -> dict:
        return {**asdict(self), "status": self.status}


def is_nifti_gz(p: Path) -> bool:
    return p.name.lower().endswith(".nii.gz") and p.is_file()


def list_cases(folder: Path) -> list[Path]:
    """Input cases the way the engine picks them: *.nii.gz (any case), not recursive, sorted."""
    return sorted((p for p in folder.iterdir() if is_nifti_gz(p)), key=lambda p: p.name)


def load_label_names(dataset_json: Path | None) -> dict[str, int]:
    """Label name -> value from an nnU-Net dataset.json (AMOS's 16 labels when none is given)."""
    if dataset_json is None:
        return dict(contract.AMOS_LABEL_IDS)
    data = json.loads(Path(dataset_json).read_text())
    labels = {}
    for name, value in (data.get("labels") or {}).items():
        if isinstance(value, int):
            labels[name] = value
        elif isinstance(value, (list, tuple)):      # nnU-Net regions: keep the member labels
            for v in value:
                labels.setdefault(f"{name}[{v}]", int(v))
        else:
            labels[name] = int(value)
    if not labels:
        raise ValueError(f"{dataset_json} has no 'labels'")
    return labels


def read_info(path: Path) -> sitk.ImageFileReader:
    r = sitk.ImageFileReader()
    r.SetFileName(str(path))
    r.ReadImageInformation()
    return r


def geometry_problems(inp, out) -> list[str]:
    """Size must be equal; origin, spacing, direction equal within 1e-4."""
    probs = []
    if tuple(inp.GetSize()) != tuple(out.GetSize()):
        return [f"size {tuple(out.GetSize())} != input {tuple(inp.GetSize())}"]
    for what in ("Origin", "Spacing", "Direction"):
        a = np.array(getattr(inp, f"Get{what}")(), float)
        b = np.array(getattr(out, f"Get{what}")(), float)
        if a.shape != b.shape or not np.allclose(a, b, rtol=0, atol=GEOMETRY_ATOL):
            diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
            probs.append(f"{what.lower()} differs from the input (max diff {diff:.3g})")
    return probs


def dice_scores(pred: np.ndarray, ref: np.ndarray, names: dict[int, str]) -> dict[str, float]:
    """Dice by organ name under amoskit.metrics' rule (present in prediction or reference)."""
    return {names.get(lab, str(lab)): d for lab, d in metrics.dice_per_label(pred, ref).items()}


def nsd_scores(pred: np.ndarray, ref: np.ndarray, spacing_xyz, names: dict[int, str],
               tolerance_mm: float) -> dict[str, float]:
    """NSD by organ name, under the same rule as Dice."""
    zyx = tuple(float(s) for s in reversed(spacing_xyz))
    return {names.get(lab, str(lab)): d
            for lab, d in surface_dice.nsd_per_label(pred, ref, zyx, tolerance_mm).items()}


def check_case(inp: Path, out: Path, ref: Path | None, allowed: dict[str, int],
               tolerance_mm: float = contract.NSD_TOLERANCE_MM) -> CaseResult:
    res = CaseResult(inp.name)
    if not out.exists():
        res.fail("no output file")
        return res
    try:
        info_in = read_info(inp)
    except RuntimeError as exc:
        res.fail(f"input unreadable ({str(exc).strip().splitlines()[-1][:120]})")
        return res
    try:
        img = sitk.ReadImage(str(out))
    except RuntimeError as exc:
        res.fail(f"output unreadable ({str(exc).strip().splitlines()[-1][:120]})")
        return res
    res.dtype = img.GetPixelIDTypeAsString()
    for p in geometry_problems(info_in, img):
        res.fail(p)
    if img.GetNumberOfComponentsPerPixel() != 1 or img.GetPixelID() not in INTEGER_TYPES:
        res.fail(f"pixel type is {res.dtype}, not an integer label map (write uint8)")
        return res
    arr = sitk.GetArrayViewFromImage(img)
    values = np.unique(arr)
    res.labels_found = [int(v) for v in values]
    allowed_values = set(allowed.values())
    bad = [int(v) for v in values if int(v) not in allowed_values]
    if bad:
        res.fail(f"labels {bad[:10]} are outside the model's labels "
                 f"{min(allowed_values)}..{max(allowed_values)}")
    if values.size == 1 and int(values[0]) == 0:
        res.warn("all background: nothing was segmented")
    if ref is not None and ref.exists() and not bad:
        try:
            ref_img = sitk.ReadImage(str(ref))
        except RuntimeError as exc:
            res.warn(f"reference unreadable ({str(exc).strip().splitlines()[-1][:80]})")
            return res
        if tuple(ref_img.GetSize()) != tuple(img.GetSize()):
            res.warn("reference has another size: Dice skipped")
            return res
        names = {v: k for k, v in allowed.items()}
        ref_arr = sitk.GetArrayViewFromImage(ref_img)
        res.dice = dice_scores(arr, ref_arr, names)
        if res.dice:
            res.mean_dice = float(np.mean(list(res.dice.values())))
        res.nsd = nsd_scores(arr, ref_arr, img.GetSpacing(), names, tolerance_mm)
        if res.nsd:
            res.mean_nsd = float(np.mean(list(res.nsd.values())))
    return res


def validate(input_dir: Path, output_dir: Path, labels_dir: Path | None = None,
             dataset_json: Path | None = None,
             tolerance_mm: float = contract.NSD_TOLERANCE_MM) -> Report:
    allowed = load_label_names(dataset_json)
    report = Report(str(input_dir), str(output_dir), str(labels_dir) if labels_dir else None,
                    allowed, nsd_tolerance_mm=tolerance_mm)
    inputs = list_cases(input_dir)
    if not inputs:
        report.set_problems.append(f"no *.nii.gz cases in {input_dir}")
    if not output_dir.is_dir():
        report.set_problems.append(f"output folder {output_dir} does not exist")
        report.cases = [CaseResult(p.name, "fail", ["no output file"]) for p in inputs]
        return report
    names = {p.name for p in inputs}
    extra = sorted(p.name for p in output_dir.iterdir() if p.name not in names)
    if extra:
        report.set_problems.append(f"{len(extra)} extra file(s) in the output: "
                                   f"{', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    for p in inputs:
        ref = labels_dir / p.name if labels_dir is not None else None
        report.cases.append(check_case(p, output_dir / p.name, ref, allowed, tolerance_mm))
    return report
