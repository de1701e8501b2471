"""One PNG per case: a few axial slices with predicted (solid) and reference (dashed) outlines,
and a legend naming each organ drawn and its colour.

Why: numbers say a segmentation is plausible; a picture shows a flipped axis, a shifted mask or
an organ in the wrong place in one glance. The slices shown are where prediction and reference
disagree most (with no reference: those showing the most organs, spread apart), so the picture
shows the errors rather than the easy middle. matplotlib (already a dependency of the host venv)
draws it headless; nothing else is needed.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

os.environ.setdefault("MPLBACKEND", "Agg")

# One colour per label id, the same in every picture and report (tab20 without its greys, which
# vanish on CT): label k gets PALETTE[(k - 1) % len(PALETTE)].
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5",
           "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def colour(label: int) -> str:
    return PALETTE[(int(label) - 1) % len(PALETTE)]


@dataclass
class Picture:
    """What write_preview drew: the file, the slices and the legend (label, name, colour)."""
    png: Path
    slices: list[int]
    legend: list[tuple[int, str, str]]
    chosen_by: str        # "disagreement", "organs" or "range"


def spread_top(score: np.ndarray, n: int, gap: int) -> list[int]:
    """Up to n indices of the highest positive scores, at least `gap` apart."""
    chosen: list[int] = []
    for z in np.argsort(-score, kind="stable"):
        if score[z] <= 0 or len(chosen) == n:
            break
        if all(abs(int(z) - c) >= gap for c in chosen):
            chosen.append(int(z))
    return sorted(chosen)


def pick_slices(pred: np.ndarray, ref: np.ndarray | None, n: int = 3) -> tuple[list[int], str]:
    """Axial slices to show and why: most voxels where prediction and reference differ; else (no
    reference, or none differ) most distinct organs; else spread over the whole volume."""
    gap = max(1, pred.shape[0] // (2 * n + 1))
    if ref is not None:
        wrong = (pred != ref).reshape(pred.shape[0], -1).sum(axis=1)
        zs = spread_top(wrong.astype(float), n, gap)
        if zs:
            return zs, "disagreement"
    both = pred if ref is None else np.maximum(pred, ref)
    flat = both.reshape(both.shape[0], -1)
    organs = np.array([np.unique(s[s > 0]).size for s in flat], float)
    if organs.any():
        # ties broken towards more foreground, so the slice shown has the most to see
        score = organs + (flat > 0).sum(axis=1) / (flat.shape[1] + 1.0)
        return spread_top(score, n, gap), "organs"
    qs = np.linspace(0.2, 0.8, n) if pred.shape[0] > 1 else [0.5]
    return sorted({int(round(q * (pred.shape[0] - 1))) for q in qs}), "range"


def write_preview(image_path: Path, pred_path: Path, ref_path: Path | None, out_png: Path,
                  title: str = "", names: dict[int, str] | None = None) -> Picture:
    """Render the case to out_png (written under a temporary name, then renamed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    img = sitk.ReadImage(str(image_path))
    vol = sitk.GetArrayFromImage(img).astype(np.float32)
    pred = sitk.GetArrayFromImage(sitk.ReadImage(str(pred_path)))
    ref = None
    if ref_path is not None and Path(ref_path).exists():
        ref = sitk.GetArrayFromImage(sitk.ReadImage(str(ref_path)))
        if ref.shape != pred.shape:
            ref = None
    if vol.ndim != 3 or pred.shape != vol.shape:
        raise ValueError(f"{pred_path.name}: prediction {pred.shape} does not match image "
                         f"{vol.shape}")
    lo, hi = np.percentile(vol, [1, 99])
    sx, sy = img.GetSpacing()[:2]
    slices, why = pick_slices(pred, ref)
    labels = set(np.unique(pred).tolist()) | (set(np.unique(ref).tolist()) if ref is not None
                                             else set())
    labels = sorted(int(lab) for lab in labels if lab != 0)
    names = names or {}
    legend = [(lab, names.get(lab, f"label {lab}"), colour(lab)) for lab in labels]
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 5.2), squeeze=False)
    for ax, z in zip(axes[0], slices):
        ax.imshow(vol[z], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  aspect=sy / sx, interpolation="nearest")
        for lab in labels:
            if (pred[z] == lab).any():
                ax.contour(pred[z] == lab, levels=[0.5], colors=[colour(lab)], linewidths=1.2)
            if ref is not None and (ref[z] == lab).any():
                ax.contour(ref[z] == lab, levels=[0.5], colors=[colour(lab)], linewidths=1.0,
                           linestyles="dashed")
        wrong = int(np.count_nonzero(pred[z] != ref[z])) if ref is not None else None
        ax.set_title(f"slice z={z}" + (f" ({wrong} voxels differ)" if wrong is not None else ""),
                     fontsize=9)
        ax.axis("off")
    key = "solid: predicted   dashed: reference" if ref is not None else "solid: predicted"
    fig.suptitle(f"{title or pred_path.name}\n{key}", fontsize=10)
    if legend:
        fig.legend(handles=[Patch(color=c, label=f"{lab} {name}") for lab, name, c in legend],
                   loc="lower center", ncol=min(len(legend), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.03 * (1 + (len(legend) - 1) // 6) + 0.02, 1, 1))
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.partial-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return Picture(out_png, slices, legend, why)


def png_name(case_name: str) -> str:
    """amos 0001.nii.gz -> amos 0001.png (the case name stays recognisable)."""
    base = case_name[:-7] if case_name.lower().endswith(".nii.gz") else case_name
    return base + ".png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("image", type=Path)
    ap.add_argument("prediction", type=Path)
    ap.add_argument("out_png", type=Path)
    ap.add_argument("--reference", type=Path, default=None)
    args = ap.parse_args(argv)
    from amoskit.contract import AMOS_LABELS
    pic = write_preview(args.image, args.prediction, args.reference, args.out_png,
                        names=AMOS_LABELS)
    print(f"{pic.png} (slices {pic.slices}, chosen by {pic.chosen_by})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
