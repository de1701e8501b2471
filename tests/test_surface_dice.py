"""Normalized surface Dice (amoskit.surface_dice): closed-form answers, the empty rule, and an
independent brute-force reference (voxel faces enumerated one by one, distances by k-d tree)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from amoskit.surface_dice import nsd_binary, nsd_per_label, surface_distances


def box_pair(counts, axis, k, pad=6):
    """Two boxes of `counts` voxels (z, y, x), the second shifted by k voxels along `axis`."""
    shape = tuple(n + 2 * pad + (k if ax == axis else 0) for ax, n in enumerate(counts))
    a = np.zeros(shape, bool)
    a[tuple(slice(pad, pad + n) for n in counts)] = True
    return a, np.roll(a, k, axis=axis)


def box_shift_nsd(extents, axis, shift, t):
    """Closed form for two E0 x E1 x E2 mm boxes shifted by `shift` mm along `axis`, t < shift.
    Per box (both alike): the end face entering the other box lies within t of the other box's
    side walls on a band of width t, [E1 E2 - (E1 - 2t)(E2 - 2t)]; the side walls lie within t
    from depth shift - t on, [2 (E1 + E2)(Es - shift + t)]; the trailing end face never."""
    es = extents[axis]
    e1, e2 = (e for ax, e in enumerate(extents) if ax != axis)
    near = e1 * e2 - (e1 - 2 * t) * (e2 - 2 * t) + 2 * (e1 + e2) * (es - shift + t)
    e0, e1_, e2_ = extents
    return near / (2 * (e0 * e1_ + e1_ * e2_ + e0 * e2_))


def test_closed_form_matches_the_briefs_worked_example():
    L, k, t = 20, 3, 1.5
    assert box_shift_nsd((L, L, L), 0, k, t) == pytest.approx(
        (L**2 - (L - 2 * t) ** 2 + 4 * L * (L - k + t)) / (6 * L**2), abs=1e-15)
    assert box_shift_nsd((L, L, L), 0, k, t) == pytest.approx(0.662917, abs=1e-6)


# Tolerances are half-integer multiples of every spacing, so no surface point sits exactly at
# the tolerance and the voxel-face surface gives the closed form exactly.
@pytest.mark.parametrize("L,k,t", [(20, 3, 1.5), (20, 3, 0.5), (12, 5, 2.5)])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_shifted_cube_isotropic(L, k, t, axis):
    a, b = box_pair((L, L, L), axis, k)
    got = nsd_binary(b, a, (1.0, 1.0, 1.0), t)
    assert got == pytest.approx(box_shift_nsd((L, L, L), axis, k, t), abs=1e-12)
    assert nsd_binary(a, b, (1.0, 1.0, 1.0), t) == pytest.approx(got, abs=1e-12)   # symmetric


@pytest.mark.parametrize("axis,k", [(0, 4), (1, 2), (2, 10)])
def test_shifted_box_anisotropic(axis, k):
    spacing = (1.2, 2.0, 0.4)          # t / spacing = 2.5, 1.5, 7.5
    counts, t = (10, 8, 30), 3.0
    extents = tuple(n * s for n, s in zip(counts, spacing))
    a, b = box_pair(counts, axis, k)
    expected = box_shift_nsd(extents, axis, k * spacing[axis], t)
    assert nsd_binary(a, b, spacing, t) == pytest.approx(expected, abs=1e-12)
    # the same masks in the wrong spacing order give another answer: spacing is (z, y, x)
    assert nsd_binary(a, b, spacing[::-1], t) != pytest.approx(expected, abs=1e-3)


def blobs(shape, seed, n=2, sigma=2.0, level=0.25):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        field = ndimage.gaussian_filter(rng.normal(size=shape), sigma)
        out.append(field > level * field.std())
    return out


def test_identical_masks_score_one_and_disjoint_far_masks_zero():
    (m,) = blobs((20, 24, 28), seed=1, n=1)
    assert m.any()
    assert nsd_binary(m, m, (3.0, 0.8, 0.8), 0.0) == 1.0
    a = np.zeros((40, 20, 20), bool)
    b = a.copy()
    a[2:8, 5:15, 5:15] = True
    b[30:38, 5:15, 5:15] = True           # facing surfaces 22 slices (22 mm) apart
    assert nsd_binary(a, b, (1.0, 1.0, 1.0), 2.0) == 0.0
    assert nsd_binary(a, b, (1.0, 1.0, 1.0), 21.5) == 0.0
    assert nsd_binary(a, b, (1.0, 1.0, 1.0), 22.5) > 0.0
    assert nsd_binary(a, b, (1.0, 1.0, 1.0), 100.0) == 1.0


def test_empty_rule_per_label():
    ref = np.zeros((10, 12, 14), np.uint8)
    pred = ref.copy()
    ref[1:5, 2:6, 2:6] = 1
    pred[1:5, 2:6, 2:6] = 1               # 1: perfect
    ref[6:9, 6:10, 6:10] = 2              # 2: missed by the prediction
    pred[6:9, 1:4, 8:12] = 3              # 3: predicted, absent from the reference
    sp = (2.0, 1.0, 1.0)
    assert nsd_per_label(pred, ref, sp, 1.0) == {1: 1.0, 2: 0.0, 3: 0.0}
    # 4 and 7 are absent from both: not scored; 0 is background
    assert nsd_per_label(pred, ref, sp, 1.0, labels=[0, 1, 4, 7, 2]) == {1: 1.0, 2: 0.0}
    assert nsd_per_label(np.zeros_like(ref), np.zeros_like(ref), sp, 1.0) == {}
    # a float label map (as some NIfTI writers store them) scores the same
    assert nsd_per_label(pred.astype(np.float32), ref, sp, 1.0) == {1: 1.0, 2: 0.0, 3: 0.0}


def test_arguments_are_checked():
    a = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError):
        nsd_per_label(a, a[:3], (1, 1, 1), 1.0)
    with pytest.raises(ValueError):
        nsd_per_label(a, a, (1, 1), 1.0)
    with pytest.raises(ValueError):
        nsd_per_label(a, a, (1, 1, 1), -1.0)
    with pytest.raises(ValueError):
        surface_distances(a.astype(bool), a.astype(bool), (1, 1, 1))


# --- an independent reference: faces enumerated voxel by voxel, distances by k-d tree ---------

def reference_surface(mask, spacing):
    """{corner (integer lattice) -> area}: each boundary face (voxel inside, neighbour outside
    or off the array) gives a quarter of its area to each of its 4 corners."""
    area = defaultdict(float)
    for v in np.argwhere(mask):
        for axis in range(3):
            a, b = (ax for ax in range(3) if ax != axis)
            for step in (-1, 1):
                n = v.copy()
                n[axis] += step
                if all(0 <= n[i] < mask.shape[i] for i in range(3)) and mask[tuple(n)]:
                    continue
                for da in (0, 1):
                    for db in (0, 1):
                        corner = [0, 0, 0]
                        corner[axis] = v[axis] + (step == 1)
                        corner[a], corner[b] = v[a] + da, v[b] + db
                        area[tuple(corner)] += spacing[a] * spacing[b] / 4
    pts = np.array(list(area), dtype=float) * np.asarray(spacing)
    return pts, np.array(list(area.values()))


def reference_distances(pred, ref, spacing):
    pp, ap = reference_surface(pred, spacing)
    pr, ar = reference_surface(ref, spacing)
    return cKDTree(pr).query(pp)[0], ap, cKDTree(pp).query(pr)[0], ar


def reference_nsd(pred, ref, spacing, t):
    dp, ap, dr, ar = reference_distances(pred, ref, spacing)
    return (ap[dp <= t].sum() + ar[dr <= t].sum()) / (ap.sum() + ar.sum())


def sorted_pairs(d, a):
    order = np.lexsort((a, np.round(d, 9)))   # ties in distance broken by area
    return d[order], a[order]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_brute_force_reference(seed):
    spacing = (2.5, 0.9, 0.7)
    pred, ref = blobs((12, 16, 18), seed)   # blobs reach the array's edges too
    assert pred.any() and ref.any() and (pred != ref).any()
    ours = surface_distances(pred, ref, spacing)
    refd = reference_distances(pred, ref, spacing)
    for i in (0, 2):                       # same points, same distances, same areas
        d1, a1 = sorted_pairs(ours[i], ours[i + 1])
        d2, a2 = sorted_pairs(refd[i], refd[i + 1])
        np.testing.assert_allclose(d1, d2, atol=1e-9)
        np.testing.assert_allclose(a1, a2, atol=1e-12)
    for t in (0.37, 1.0, 2.2, 4.1):
        expected = reference_nsd(pred, ref, spacing, t)
        assert 0.0 < expected < 1.0
        assert nsd_binary(pred, ref, spacing, t) == pytest.approx(expected, abs=1e-12)


def test_label_map_matches_reference_per_label():
    spacing = (3.0, 0.8, 0.8)
    rng = np.random.default_rng(7)
    ref = np.zeros((14, 30, 30), np.uint8)
    pred = ref.copy()
    ref[2:8, 3:12, 4:14], pred[2:9, 4:13, 4:15] = 1, 1
    ref[5:12, 15:27, 10:25], pred[4:12, 16:28, 9:24] = 2, 2
    ref[9:13, 2:9, 20:28], pred[9:12, 2:8, 21:28] = 5, 5         # labels need not be dense
    pred[rng.random(pred.shape) < 0.01] = 2                     # scattered false positives
    got = nsd_per_label(pred, ref, spacing, 1.5)
    assert sorted(got) == [1, 2, 5]
    for lab, value in got.items():
        assert value == pytest.approx(reference_nsd(pred == lab, ref == lab, spacing, 1.5),
                                      abs=1e-12)
    assert got[2] < got[1]                 # the scattered voxels cost label 2 surface


def test_cross_check_with_deepmind_surface_distance():
    """Optional: DeepMind's reference code (Nikolov et al.), where installed. It samples the
    same corner points at the same distances, weighted by marching-cubes areas instead of
    voxel faces, so its NSD is close but not equal."""
    sd = pytest.importorskip("surface_distance")
    spacing = (2.0, 0.8, 0.8)
    pred, ref = blobs((16, 40, 40), seed=3, sigma=3.0)
    theirs = sd.compute_surface_distances(ref, pred, spacing)
    d_p, _, d_r, _ = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(d_p), np.sort(theirs["distances_pred_to_gt"]), atol=1e-9)
    np.testing.assert_allclose(np.sort(d_r), np.sort(theirs["distances_gt_to_pred"]), atol=1e-9)
    for t in (1.0, 2.0):
        assert nsd_binary(pred, ref, spacing, t) == pytest.approx(
            sd.compute_surface_dice_at_tolerance(theirs, t), abs=0.03)
