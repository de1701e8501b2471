"""Synthetic abdominal CT phantoms with AMOS22 labels.

Why: new users have no AMOS data and our tests need cases with known answers. Each phantom is a
body (air, fat, muscle, spine, ribs) holding the 15 AMOS organs as smoothly deformed shapes in
plausible positions, each with its own HU band, plus partial-volume blur and noise.

Anatomy is laid out in array order (x = patient left, y = posterior, z = superior), so the random
direction matrix (with flipped axes) only changes the header: it tests geometry handling, not the
model. Same seed and scale give the same bytes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from amoskit import contract

DEFAULT_SCALE = 0.5  # the one scale used by `make samples`, training and every Dice bar

LABELS = contract.AMOS_LABEL_IDS  # name -> id, as the phantoms' dataset.json writes them

# Mean HU band per label (a case draws its mean uniformly inside the band): bands 40 HU apart
# (4 noise sigmas), so that a small model learns them on a CPU in minutes; a phantom, not anatomy.
ORGAN_HU = {
    14: (0, 10), 4: (40, 50), 7: (80, 90), 13: (120, 130), 5: (160, 170), 10: (200, 210),
    11: (240, 250), 12: (280, 290), 15: (320, 330), 6: (360, 370), 1: (400, 410),
    2: (440, 450), 3: (480, 490), 9: (520, 530), 8: (560, 570),
}
AIR_HU, FAT_HU, MUSCLE_HU, BONE_HU, MARROW_HU = -1000, -100, 60, 1100, 750


@dataclass
class Phantom:
    image: sitk.Image  # int16 HU
    label: sitk.Image  # uint8, AMOS ids 0..15


def _grid(shape, spacing, origin_mm):
    """Physical coordinates (mm, body-centred) of voxel centres along each axis (z, y, x)."""
    return [origin_mm[i] + spacing[i] * np.arange(shape[i], dtype=np.float32) for i in range(3)]


def _smooth_field(rng, shape, amplitude, knots=4):
    """Low-frequency random field in [-amplitude, amplitude]: deforms shapes smoothly."""
    coarse = rng.uniform(-1.0, 1.0, size=(knots, knots, knots)).astype(np.float32)
    zoom = [max(s, 1) / knots for s in shape]
    field = ndimage.zoom(coarse, zoom, order=3, mode="nearest", grid_mode=True)
    field = field[: shape[0], : shape[1], : shape[2]]
    pad = [(0, max(0, shape[i] - field.shape[i])) for i in range(3)]
    return amplitude * np.pad(field, pad, mode="edge")


def _box(axes, centre, extent):
    """Index slices of the voxels within `extent` mm of `centre`, clipped to the volume."""
    out = []
    for ax, c, e in zip(axes, centre, extent):
        lo = int(np.searchsorted(ax, c - e))
        hi = int(np.searchsorted(ax, c + e, side="right"))
        out.append(slice(lo, max(lo, hi)))
    return tuple(out)


def _rotation(rng, max_deg):
    a = np.deg2rad(rng.uniform(-max_deg, max_deg, size=3))
    cz, sz, cy, sy, cx, sx = np.cos(a[0]), np.sin(a[0]), np.cos(a[1]), np.sin(a[1]), np.cos(a[2]), np.sin(a[2])
    rz = np.array([[1, 0, 0], [0, cz, -sz], [0, sz, cz]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[cx, -sx, 0], [sx, cx, 0], [0, 0, 1]])
    return (rz @ ry @ rx).astype(np.float32)


def _ellipsoid(rng, axes, centre, radii, deform=0.18, max_rot=20.0):
    """(slices, mask) of a randomly rotated, smoothly deformed ellipsoid."""
    reach = max(radii) * (1.0 + deform) + 2.0
    sl = _box(axes, centre, (reach, reach, reach))
    zz, yy, xx = np.meshgrid(*(axes[i][sl[i]] - centre[i] for i in range(3)), indexing="ij")
    rot = _rotation(rng, max_rot)
    pts = np.stack([zz, yy, xx], axis=-1) @ rot.T
    d = np.sqrt(sum((pts[..., i] / radii[i]) ** 2 for i in range(3)))
    if d.size == 0:
        return sl, d.astype(bool)
    return sl, d < 1.0 + _smooth_field(rng, d.shape, deform)


def _tube_z(rng, axes, x0, y0, z0, z1, radius, wander=8.0):
    """(slices, mask) of a tube running along z whose centre line wanders smoothly."""
    sl = _box(axes, ((z0 + z1) / 2, y0, x0), ((z1 - z0) / 2, radius + wander + 2, radius + wander + 2))
    z = axes[0][sl[0]]
    if z.size == 0:
        return sl, np.zeros((0, 0, 0), bool)
    t = (z - z0) / max(z1 - z0, 1e-3)
    px, py = rng.uniform(0, 2 * np.pi, 2)
    cx = x0 + wander * np.sin(2.2 * t + px)
    cy = y0 + 0.6 * wander * np.sin(1.7 * t + py)
    zz, yy, xx = np.meshgrid(z, axes[1][sl[1]], axes[2][sl[2]], indexing="ij")
    r = radius * (1.0 + _smooth_field(rng, zz.shape, 0.12))
    return sl, (xx - cx[:, None, None]) ** 2 + (yy - cy[:, None, None]) ** 2 < r**2


def _c_arc(axes, centre, ring_r, tube_r, theta0, theta1, half_height):
    """(slices, mask) of a C-shaped tube (duodenum) curving around `centre` in the axial plane."""
    reach = ring_r + tube_r + 2
    sl = _box(axes, centre, (half_height + tube_r + 2, reach, reach))
    zz, yy, xx = np.meshgrid(*(axes[i][sl[i]] - centre[i] for i in range(3)), indexing="ij")
    theta = np.mod(np.arctan2(yy, xx) - theta0, 2 * np.pi)
    span = np.mod(theta1 - theta0, 2 * np.pi)
    radial = np.sqrt(xx**2 + yy**2)
    # the arc descends as it turns, as the duodenum does around the pancreatic head
    zc = half_height * (1.0 - 2.0 * np.clip(theta / span, 0, 1))
    inside = (theta <= span) & ((radial - ring_r) ** 2 + ((zz - zc) * 0.8) ** 2 < tube_r**2)
    return sl, inside


def _paint(volume, sl, mask, value):
    if mask.size:
        volume[sl][mask] = value


def _body(shape, axes, a, b, rng):
    """Masks for body, subcutaneous fat ring and muscle wall (elliptic cylinder wobbling in z)."""
    zz = axes[0][:, None, None]
    yy, xx = axes[1][None, :, None], axes[2][None, None, :]
    wob = 1.0 + 0.04 * np.sin(zz / 60.0 + rng.uniform(0, 6))
    r = np.sqrt((xx / (a * wob)) ** 2 + (yy / (b * wob)) ** 2)
    fat = rng.uniform(14, 26)
    body = r < 1.0
    muscle_outer = r < 1.0 - fat / b
    visceral = r < 1.0 - (fat + rng.uniform(10, 16)) / b
    return body, muscle_outer, visceral


def make_phantom(seed: int, scale: float = DEFAULT_SCALE) -> Phantom:
    """One seeded phantom. `scale` < 1 gives fewer voxels at coarser spacing, same body size."""
    if not 0.05 <= scale <= 1.0:
        raise ValueError(f"scale must be within 0.05..1, got {scale}")
    rng = np.random.default_rng(seed)
    inplane = rng.uniform(0.6, 1.0) / scale
    slice_mm = rng.uniform(1.5, 5.0) / scale
    a, b = rng.uniform(140, 175), rng.uniform(105, 135)  # body half-width (x), half-depth (y)
    height = rng.uniform(300, 380)
    fov = 2 * a + rng.uniform(30, 70)
    n_xy = int(np.ceil(fov / inplane))
    n_y = int(np.ceil((2 * b + rng.uniform(40, 90)) / inplane))
    n_z = max(8, int(np.ceil(height / slice_mm)))
    shape = (n_z, n_y, n_xy)
    spacing = (slice_mm, inplane, inplane)
    start = [-(n - 1) * s / 2 for n, s in zip(shape, spacing)]
    axes = _grid(shape, spacing, start)
    top, bottom = axes[0][-1], axes[0][0]

    hu = np.full(shape, AIR_HU, np.float32)
    lab = np.zeros(shape, np.uint8)
    body, muscle_outer, visceral = _body(shape, axes, a, b, rng)
    hu[body] = FAT_HU + rng.normal(0, 8)
    hu[muscle_outer] = MUSCLE_HU + rng.normal(0, 5)
    hu[visceral] = FAT_HU + 10 + rng.normal(0, 8)

    sx, sy = a / 160.0, b / 120.0

    def jit(c, r):
        centre = (c[2] + rng.normal(0, 6), c[1] * sy + rng.normal(0, 5), c[0] * sx + rng.normal(0, 6))
        radii = tuple(v * rng.uniform(0.88, 1.12) for v in (r[2], r[1], r[0]))
        return centre, radii

    # bones (distractors): spine with marrow and canal, psoas muscles, ribs on the upper body wall
    spine_y = 78 * sy
    sl, m = _tube_z(rng, axes, 0.0, spine_y, bottom - 5, top + 5, 22, wander=3)
    _paint(hu, sl, m, BONE_HU)
    sl, m = _tube_z(rng, axes, 0.0, spine_y, bottom - 5, top + 5, 15, wander=0)
    _paint(hu, sl, m, MARROW_HU)
    sl, m = _tube_z(rng, axes, 0.0, spine_y + 30, bottom - 5, top + 5, 8, wander=0)
    _paint(hu, sl, m, 20)
    for side in (-1, 1):
        sl, m = _tube_z(rng, axes, side * 40 * sx, spine_y - 5, bottom - 5, 40, 18, wander=6)
        _paint(hu, sl, m, MUSCLE_HU)
    zz = axes[0][:, None, None]
    yy, xx = axes[1][None, :, None], axes[2][None, None, :]
    rr = np.sqrt((xx / (a - 22)) ** 2 + (yy / (b - 22)) ** 2)
    ribs = (np.abs(rr - 1.0) < 6.0 / b) & (np.mod(zz - rng.uniform(0, 28), 28) < 9) & (zz > 30) & (yy < b * 0.6)
    hu[ribs] = BONE_HU - 150

    organs = []  # (label, sl, mask) painted in order; vessels and small organs last
    for label, c, r in [
        (6, (-70, -5, 95), (80, 75, 70)), (1, (95, 35, 90), (35, 45, 50)),
        (7, (50, -35, 80), (50, 35, 45)), (2, (-70, 55, 30), (28, 28, 50)),
        (3, (70, 55, 40), (28, 28, 50)), (14, (0, -30, bottom + 55), (42, 36, 36)),
        (15, (0, 15, bottom + 25), (24, 22, 22)), (4, (-55, -55, 40), (19, 19, 30)),
        (10, (15, 5, 50), (62, 16, 18)),
    ]:
        centre, radii = jit(c, r)
        organs.append((label, *_ellipsoid(rng, axes, centre, radii)))
    centre, _ = jit((-30, 5, 40), (1, 1, 1))
    organs.append((13, *_c_arc(axes, centre, rng.uniform(34, 40), 11, np.deg2rad(80), np.deg2rad(280), 22)))
    for label, c in ((11, (-45, 42, 100)), (12, (45, 42, 105))):
        centre, radii = jit(c, (14, 12, 20))
        organs.append((label, *_ellipsoid(rng, axes, centre, radii, deform=0.12)))
    organs.append((8, *_tube_z(rng, axes, 15 * sx, 38 * sy, -60 + rng.normal(0, 10), top + 5, rng.uniform(10, 13))))
    organs.append((9, *_tube_z(rng, axes, -28 * sx, 32 * sy, -60 + rng.normal(0, 10), 125, rng.uniform(11, 14))))
    organs.append((5, *_tube_z(rng, axes, 12 * sx, 18 * sy, 105, top + 5, rng.uniform(9, 11), wander=4)))

    for label, sl, m in organs:
        lo, hi = ORGAN_HU[label]
        region = body[sl] & m if m.size else m
        _paint(hu, sl, region, rng.uniform(lo, hi))
        _paint(lab, sl, region, label)

    # partial-volume blur (in voxels: in-plane wider than along z) and scanner noise
    hu = ndimage.gaussian_filter(hu, sigma=(0.5, 0.8, 0.8))
    hu += rng.normal(0.0, 10.0, size=shape).astype(np.float32)
    hu = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)

    direction = np.diag(rng.choice([-1.0, 1.0], size=3))
    origin = rng.uniform(-250, 250, size=3)
    return Phantom(_to_sitk(hu, spacing, origin, direction), _to_sitk(lab, spacing, origin, direction))


def _to_sitk(arr, spacing_zyx, origin_xyz, direction):
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    img.SetOrigin(tuple(float(o) for o in origin_xyz))
    img.SetDirection(tuple(float(v) for v in direction.ravel()))
    return img


def write_phantom(phantom: Phantom, image_path, label_path) -> None:
    """Write both files (compressed NIfTI) under temporary names, then rename."""
    import os
    for img, path in ((phantom.image, image_path), (phantom.label, label_path)):
        path = str(path)
        tmp = os.path.join(os.path.dirname(path) or ".", f".partial-{os.getpid()}-{os.path.basename(path)}")
        sitk.WriteImage(img, tmp, useCompression=True)
        os.replace(tmp, path)
