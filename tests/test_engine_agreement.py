"""Our engine against nnU-Net's own nnUNetPredictor on the same model folder and the same files.

Inputs: the real CT slab from ../shared, a phantom resampled to 0.8 x 0.8 x 5 mm (nnU-Net's
separate-z rule applies), and a phantom whose direction matrix is flipped. Pass: voxel agreement
>= 99.5 %, Dice >= 0.98 for every label with >= 1000 voxels in nnU-Net's output. Geometry is
checked with SimpleITK and, independently, with nibabel.
"""
import shutil

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from engine_helpers import WEIGHTS, dice, labels_of, require_shared_ct, run_engine

from amoskit.bench.nnunet_reference import predict_files
from amoskit.data.phantoms import make_phantom

pytestmark = [pytest.mark.agreement, pytest.mark.inference]


def anisotropic_case(seed=9200) -> sitk.Image:
    """A phantom resampled onto a 0.8 x 0.8 x 5 mm grid around its centre (200 x 200 x 200 mm)."""
    ph = make_phantom(seed).image
    centre = ph.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in ph.GetSize()])
    spacing, size = (0.8, 0.8, 5.0), (250, 250, 40)
    direction = np.array(ph.GetDirection()).reshape(3, 3)
    origin = np.array(centre) - direction @ (np.array(spacing) * (np.array(size) - 1) / 2)
    return sitk.Resample(ph, size, sitk.Transform(), sitk.sitkLinear, origin.tolist(), spacing,
                         ph.GetDirection(), -1024, sitk.sitkInt16)


def flipped_case(seed=9201) -> sitk.Image:
    img = make_phantom(seed).image
    img.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    return img


@pytest.fixture(scope="module")
def predictions(tmp_path_factory):
    ct = require_shared_ct()
    root = tmp_path_factory.mktemp("agreement")
    inp = root / "input"
    inp.mkdir()
    shutil.copy(ct / "ct_abdomen_slab.nii.gz", inp / "real ct.slab.nii.gz")
    sitk.WriteImage(anisotropic_case(), str(inp / "aniso_0.8x0.8x5.nii.gz"), useCompression=True)
    sitk.WriteImage(flipped_case(), str(inp / "Flipped.Dir.nii.gz"), useCompression=True)
    ours = root / "ours"
    proc = run_engine(inp, ours, TTA=0)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ref = root / "nnunet"
    predict_files(WEIGHTS, sorted(inp.iterdir()), ref, folds=(0,), tta=False)
    return inp, ours, ref


CASES = ["real ct.slab.nii.gz", "aniso_0.8x0.8x5.nii.gz", "Flipped.Dir.nii.gz"]


@pytest.mark.parametrize("name", CASES)
def test_agrees_with_nnunet(predictions, name):
    _, ours, ref = predictions
    a, b = labels_of(ours / name), labels_of(ref / name)
    assert a.shape == b.shape
    agreement = float((a == b).mean())
    assert agreement >= 0.995, f"{name}: voxel agreement {agreement:.4%}"
    for label in np.unique(b):
        if label and (b == label).sum() >= 1000:
            d = dice(a, b, label)
            assert d >= 0.98, f"{name}: label {label} Dice {d:.4f} vs nnU-Net"


@pytest.mark.parametrize("name", CASES)
def test_output_geometry_is_the_inputs(predictions, name):
    inp, ours, _ = predictions
    src, out = sitk.ReadImage(str(inp / name)), sitk.ReadImage(str(ours / name))
    assert out.GetSize() == src.GetSize()
    assert out.GetOrigin() == src.GetOrigin()
    assert out.GetSpacing() == src.GetSpacing()
    assert out.GetDirection() == src.GetDirection()
    assert out.GetPixelID() == sitk.sitkUInt8
    n_src, n_out = nib.load(str(inp / name)), nib.load(str(ours / name))
    assert n_out.shape == n_src.shape
    np.testing.assert_allclose(n_out.affine, n_src.affine, atol=1e-5)
    assert n_out.get_data_dtype() == np.uint8
