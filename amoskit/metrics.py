"""Overlap metrics between two label maps, with one rule for empty organs, used by every tool.

The rule: Dice of a label is scored where the label is present in the prediction OR the
reference; present in only one of them it scores 0.0; absent from both it is not scored (None:
nothing was there to find, and a perfect 1.0 would inflate means). Agreement is the fraction of
voxels with the same label. Arrays must have the same shape (callers check geometry first).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def confusion(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """k x k counts: [predicted label, reference label], k = largest label + 1."""
    k = int(max(pred.max(initial=0), ref.max(initial=0))) + 1
    return np.bincount(pred.astype(np.int64).ravel() * k + ref.astype(np.int64).ravel(),
                       minlength=k * k).reshape(k, k)


def dice_from_confusion(conf: np.ndarray, label: int) -> float | None:
    if label >= conf.shape[0]:
        return None
    p, r, both = conf[label, :].sum(), conf[:, label].sum(), conf[label, label]
    return float(2 * both / (p + r)) if p + r else None


def dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float | None:
    """Dice of one label under the module's rule (None: absent from both)."""
    return dice_from_confusion(confusion(pred, ref), label)


def dice_per_label(pred: np.ndarray, ref: np.ndarray, labels=None,
                   min_ref_voxels: int = 0) -> dict[int, float]:
    """{label: Dice} for the foreground labels scored under the rule (all present ones when
    `labels` is None); `min_ref_voxels` keeps only labels with that many reference voxels."""
    conf = confusion(pred, ref)
    wanted = range(1, conf.shape[0]) if labels is None else labels
    out = {}
    for lab in wanted:
        lab = int(lab)
        if lab == 0 or (min_ref_voxels and (lab >= conf.shape[0] or
                                            conf[:, lab].sum() < min_ref_voxels)):
            continue
        d = dice_from_confusion(conf, lab)
        if d is not None:
            out[lab] = d
    return out


def agreement(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of voxels with the same label (0.0 when the shapes differ)."""
    if pred.shape != ref.shape:
        return 0.0
    return float(np.count_nonzero(pred == ref)) / pred.size if pred.size else 1.0


def read_labels(path: Path) -> np.ndarray:
    """A label map's voxels (z, y, x)."""
    import SimpleITK as sitk
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def folder_agreement(a: Path, b: Path, names: list[str]) -> float | None:
    """Voxel agreement pooled over same-named label maps in two folders; None when one is
    unreadable or there is nothing to compare."""
    same = total = 0
    for n in names:
        try:
            x, y = read_labels(a / n), read_labels(b / n)
        except RuntimeError:
            return None
        if x.shape != y.shape:
            return 0.0
        same += int(np.count_nonzero(x == y))
        total += x.size
    return same / total if total else None
