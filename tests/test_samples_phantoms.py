"""The synthetic phantom generator: deterministic, all 16 labels, varied geometry."""
import hashlib

import numpy as np
import pytest
import SimpleITK as sitk


from amoskit.data.samples import make_samples
from amoskit.data.phantoms import DEFAULT_SCALE, make_phantom

pytestmark = pytest.mark.samples


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a = make_samples(tmp_path / "a", 2)
    b = make_samples(tmp_path / "b", 2)
    for x, y in zip(a, b):
        assert sha(x) == sha(y)
        assert sha(x.parent.parent / "labels" / x.name) == sha(y.parent.parent / "labels" / y.name)


def test_different_seeds_differ():
    a = sitk.GetArrayFromImage(make_phantom(1).image)
    b = sitk.GetArrayFromImage(make_phantom(2).image)
    assert a.shape != b.shape or not np.array_equal(a, b)


@pytest.mark.parametrize("seed", [9000, 9001, 9002])
def test_all_labels_and_ct_like_voxels(seed):
    p = make_phantom(seed)
    lab = sitk.GetArrayFromImage(p.label)
    img = sitk.GetArrayFromImage(p.image)
    assert set(np.unique(lab)) == set(range(16))
    assert p.image.GetPixelID() == sitk.sitkInt16 and p.label.GetPixelID() == sitk.sitkUInt8
    assert img.min() <= -900 and img.max() >= 400  # air and bone present
    assert p.image.GetSpacing() == p.label.GetSpacing() and p.image.GetDirection() == p.label.GetDirection()


def test_geometry_variety():
    phantoms = [make_phantom(s) for s in range(9000, 9010)]
    spacings = [p.image.GetSpacing() for p in phantoms]
    inplane = [s[0] for s in spacings]
    slices = [s[2] for s in spacings]
    assert min(inplane) >= 0.6 / DEFAULT_SCALE - 1e-6 and max(inplane) <= 1.0 / DEFAULT_SCALE + 1e-6
    assert min(slices) >= 1.5 / DEFAULT_SCALE - 1e-6 and max(slices) <= 5.0 / DEFAULT_SCALE + 1e-6
    assert len({tuple(p.image.GetSize()) for p in phantoms}) == 10
    directions = {p.image.GetDirection() for p in phantoms}
    assert len(directions) >= 3
    assert any(min(d[0], d[4], d[8]) < 0 for d in directions)  # flipped axes occur
    assert len({p.image.GetOrigin() for p in phantoms}) == 10


def test_scale_keeps_body_size():
    full = make_phantom(5, 1.0)
    small = make_phantom(5, 0.25)
    fx = full.image.GetSize()[0] * full.image.GetSpacing()[0]
    sx = small.image.GetSize()[0] * small.image.GetSpacing()[0]
    assert abs(fx - sx) / fx < 0.02
    assert np.prod(small.image.GetSize()) < np.prod(full.image.GetSize()) / 20


def test_sample_names_are_awkward(tmp_path):
    names = [p.name for p in make_samples(tmp_path, 4)]
    assert any(" " in n for n in names)
    assert any(n.count(".") > 2 for n in names)
    assert any(n != n.lower() for n in names)
    assert not any(n.startswith("amos_") for n in names)
    assert sorted(p.name for p in (tmp_path / "labels").iterdir()) == sorted(names)
