"""ENGINE=nnunet: nnU-Net's own predictor inside our runner gives nnU-Net's answer exactly.

On the zoo's nnU-Net-trained folders (see test_engine_nnunet_kinds.py), against nnUNetv2_predict,
nnUNetv2_ensemble and nnUNetv2_apply_postprocessing: every voxel equal, same geometry, same
arbitrary names, for the kinds whose composition differs (2-D tiles, regions, an ensemble with
postprocessing; the cascade runs in the image, tests/test_pipeline_nnunet_fallback.py).
"""
import os
import subprocess
import sys

import pytest

from amoskit.bench import nnunet_kinds

pytestmark = [pytest.mark.engine, pytest.mark.agreement, pytest.mark.slow]


@pytest.mark.parametrize("kind", ["2d", "regions", "ensemble_pp"])  # the cascade: test_pipeline_nnunet_fallback
def test_fallback_engine_equals_nnunet_exactly(zoo, kind, tmp_path):
    r = nnunet_kinds.compare(zoo, kind, tmp_path, engine="nnunet")
    assert r.rc == 0, r.log[-3000:]
    assert r.cases == len(zoo["cases"]) and r.same_geometry
    assert r.agreement == [1.0] * r.cases, (kind, r.agreement)
    assert "ENGINE=nnunet (nnU-Net's own predictor)" in r.log and "device: cpu" in r.log


def test_fallback_without_nnunet_says_how_to_build(tmp_path, zoo):
    """An image without nnunetv2 asked for ENGINE=nnunet: one line naming the fix, exit 2, nothing written."""
    stub = tmp_path / "stub"
    (stub / "nnunetv2").mkdir(parents=True)
    (stub / "nnunetv2" / "__init__.py").write_text("raise ImportError('no nnunetv2 here')\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(stub), "INPUT_DIR": zoo["inputs"], "OUTPUT_DIR": str(out),
           "MODEL_DIR": zoo["kinds"]["2d"]["model_folder"], "ENGINE": "nnunet", "FORCE_CPU": "1"}
    p = subprocess.run([sys.executable, str(nnunet_kinds.SCRIPT)], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "make build ENGINE=nnunet" in p.stdout and "Traceback" not in p.stdout + p.stderr
    assert not list(out.glob("*.nii.gz"))
