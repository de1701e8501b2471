"""One PNG per case: a few axial slices with predicted (solid) and reference (dashed) outlines.

Why: numbers say a segmentation is plausible; a picture shows a flipped axis, a shifted mask or
an organ in the wrong place in one glance. matplotlib (already a dependency of the host venv)
draws it headless; nothing else is needed.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

os.environ.setdefault("MPLBACKEND", "Agg")


def pick_slices(pred: np.ndarray, ref: np.ndarray | None, n: int = 3) -> list[int]:
    """Axial slices spread over the segmented range (or the whole volume if nothing is)."""
    fg = (pred > 0) if ref is None else ((pred > 0) | (ref > 0))
    zs = np.flatnonzero(fg.reshape(fg.shape[0], -1).any(axis=1))
    if zs.size == 0:
        zs = np.arange(pred.shape[0])
    qs = np.linspace(0.2, 0.8, n) if zs.size > 1 else [0.5]
    return sorted({int(zs[int(round(q * (zs.size - 1)))]) for q in qs})


def write_preview(image_path: Path, pred_path: Path, ref_path: Path | None, out_png: Path,
                  title: str = "") -> Path:
    """Render the case to out_png (written under a temporary name, then renamed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    slices = pick_slices(pred, ref)
    labels = sorted(set(np.unique(pred).tolist()) | (set(np.unique(ref).tolist()) if ref is not None else set()))
    labels = [lab for lab in labels if lab != 0]
    cmap = plt.get_cmap("tab20")
    fig, axes = plt.subplots(1, len(slices), figsize=(4.2 * len(slices), 4.6), squeeze=False)
    for ax, z in zip(axes[0], slices):
        ax.imshow(vol[z], cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1,
                  aspect=sy / sx, interpolation="nearest")
        for lab in labels:
            color = cmap((lab - 1) % 20)
            if (pred[z] == lab).any():
                ax.contour(pred[z] == lab, levels=[0.5], colors=[color], linewidths=1.2)
            if ref is not None and (ref[z] == lab).any():
                ax.contour(ref[z] == lab, levels=[0.5], colors=[color], linewidths=1.0,
                           linestyles="dashed")
        ax.set_title(f"slice z={z}", fontsize=9)
        ax.axis("off")
    fig.suptitle((title or pred_path.name) + "\nsolid: predicted   dashed: reference"
                 if ref is not None else (title or pred_path.name) + "\nsolid: predicted",
                 fontsize=10)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.name}.partial-{os.getpid()}.png")
    try:
        fig.savefig(tmp, dpi=90)
        os.replace(tmp, out_png)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return out_png


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
    write_preview(args.image, args.prediction, args.reference, args.out_png)
    print(args.out_png)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
