"""Helpers for tests that run the engine the way the image does: `python run_inference.py`."""
from __future__ import annotations

import os
import subprocess
import uuid
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from amoskit import metrics

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "inference" / "run_inference.py"
WEIGHTS = (REPO / os.environ.get("WEIGHTS", "weights")).resolve()  # make exports WEIGHTS=weights (relative)
SHARED_CT = REPO.parent / "shared" / "data" / "real-ct"
# the interpreter running pytest (make test: .venv) also runs the tools: a scratch venv with
# another torch tests itself
PY = sys.executable


def run_engine(inp: Path, out: Path, timeout=600, cwd=None, **env) -> subprocess.CompletedProcess:
    """Run inference/run_inference.py as a child process with INPUT_DIR/OUTPUT_DIR and extra env."""
    full = {**os.environ, "INPUT_DIR": str(inp), "OUTPUT_DIR": str(out), "MODEL_DIR": str(WEIGHTS),
            "COLUMNS": "160", **{k: str(v) for k, v in env.items()}}
    return subprocess.run([PY, str(SCRIPT)], env=full, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or REPO)


def labels_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    """Dice of a label the reference `b` holds (amoskit.metrics' rule; absent from both is an error
    here, not a free 1.0: every caller asks about labels present in the reference)."""
    d = metrics.dice(a, b, label)
    assert d is not None, f"label {label} is in neither map"
    return d


def write_image(path: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection([float(v) for v in direction])
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}.nii.gz")  # ITK rewrites names holding .NII/.hdr/.img
    sitk.WriteImage(img, str(tmp), useCompression=True)
    tmp.rename(path)
    return path


def require_shared_ct() -> Path:
    """The real CT from ../shared; fail in CI (it must be there), skip elsewhere."""
    import pytest
    if not (SHARED_CT / "ct_abdomen_slab.nii.gz").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"real CT test data missing: {SHARED_CT} (expected ../shared beside the clone)", pytrace=False)
        pytest.skip(f"no {SHARED_CT}")
    return SHARED_CT
