"""nnU-Net's resampling rules, done with torch on the device in use.

Why: nnU-Net resamples on the CPU one channel at a time in float64 (skimage); for 16 logit
channels on an AMOS case that is most of its runtime. Same rules here (its separate-z rule:
when the spacing anisotropy exceeds 3, in-plane first, then along the low-resolution axis with
`order_z`), as batched torch interpolation, with an argmax that streams over channel groups so
full-resolution logits never have to exist at once.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

ANISO_THRESHOLD = 3.0


def new_shape(shape, old_spacing, new_spacing) -> tuple:
    """nnU-Net's compute_new_shape: round(old_spacing / new_spacing * shape), at least 1 voxel."""
    return tuple(max(1, int(round(o / n * s))) for s, o, n in zip(shape, old_spacing, new_spacing))


def _lowres_axis(spacing):
    spacing = np.asarray(spacing, dtype=float)
    axes = np.where(spacing.max() / spacing == 1)[0]
    return int(axes[0]) if len(axes) == 1 else None


def separate_z(current_spacing, new_spacing, force=None):
    """(do_separate_z, axis) exactly as nnU-Net's determine_do_sep_z_and_axis decides."""
    if force is not None:
        axis = _lowres_axis(current_spacing) if force else None
        return (axis is not None) and bool(force), axis
    for sp in (current_spacing, new_spacing):
        if max(sp) / min(sp) > ANISO_THRESHOLD:
            axis = _lowres_axis(sp)
            return axis is not None, axis
    return False, None


_SPLINE_PAD = 12  # scipy pads this many edge voxels before its spline prefilter (mode 'nearest')


@functools.lru_cache(maxsize=64)
def _bspline_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix equal to scipy's zoom(order=3, mode='nearest', grid_mode=True) on one axis.

    Cubic B-spline interpolation is linear: edge-pad, invert the B-spline prefilter (a banded
    system, mirror boundary), then sample 4 taps at the half-pixel-aligned source coordinates.
    """
    pad = _SPLINE_PAD
    n_pad = n_in + 2 * pad
    a = np.zeros((n_pad, n_pad))
    idx = np.arange(n_pad)
    a[idx, idx] = 4 / 6
    a[idx[1:], idx[:-1]] = 1 / 6
    a[idx[:-1], idx[1:]] = 1 / 6
    if n_pad > 1:
        a[0, 1] = a[-1, -2] = 2 / 6
    edge = np.zeros((n_pad, n_in))
    edge[idx, np.clip(idx - pad, 0, n_in - 1)] = 1.0
    coeff = np.linalg.solve(a, edge)  # B-spline coefficients per unit input
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5 + pad
    base = np.floor(x).astype(int)
    sample = np.zeros((n_out, n_pad))
    for tap in range(-1, 3):
        k = base + tap
        t = np.abs(x - k)
        w = np.where(t < 1, 2 / 3 - t**2 + t**3 / 2, np.where(t < 2, (2 - t) ** 3 / 6, 0.0))
        np.add.at(sample, (np.arange(n_out), np.clip(k, 0, n_pad - 1)), w)
    return (sample @ coeff).astype(np.float32)


def _matrix_along(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Apply the cubic B-spline resampling matrix along tensor dimension `dim`."""
    n = x.shape[dim]
    if n == size:
        return x
    w = torch.from_numpy(_bspline_matrix(n, size)).to(x.device, x.dtype)
    return (x.movedim(dim, -1) @ w.T).movedim(-1, dim)


def _interp(x: torch.Tensor, size, order: int) -> torch.Tensor:
    """x: (N, C, *spatial). order 0 nearest, 1 (bi/tri)linear, >= 2 cubic B-spline (scipy order 3)."""
    nd = x.ndim - 2
    if order == 0:
        return F.interpolate(x, size=size, mode="nearest-exact")
    if order >= 2:
        for i, s in enumerate(size):
            x = _matrix_along(x, 2 + i, int(s))
        return x
    return F.interpolate(x, size=size, mode="bilinear" if nd == 2 else "trilinear", align_corners=False)


def _along_axis(x: torch.Tensor, axis: int, size: int, order: int) -> torch.Tensor:
    """Resample (C, a, b, c) along one spatial axis with map_coordinates' half-pixel mapping."""
    n = x.shape[axis + 1]
    if n == size:
        return x
    if order == 0:
        src = (torch.arange(size, device=x.device, dtype=torch.float64) + 0.5) * (n / size) - 0.5
        idx = torch.clamp(torch.floor(src + 0.5), 0, n - 1).long()
        return torch.index_select(x, axis + 1, idx)
    moved = x.movedim(axis + 1, -1)
    shp = moved.shape
    flat = moved.reshape(1, -1, shp[-1])
    out = F.interpolate(flat, size=size, mode="linear", align_corners=False)
    return out.reshape(*shp[:-1], size).movedim(-1, axis + 1)


def resample(x: torch.Tensor, shape, current_spacing, new_spacing, order=3, order_z=0, force_separate_z=None):
    """Resample (C, *spatial) float to `shape` following nnU-Net's resample_data_or_seg rules."""
    shape = tuple(int(s) for s in shape)
    if tuple(x.shape[1:]) == shape:
        return x
    do_sep, axis = separate_z(current_spacing, new_spacing, force_separate_z)
    if not do_sep:
        out = _interp(x[None], shape, order)[0]
        if order >= 2:  # skimage's resize clips cubic overshoot to the input's range
            flat = x.reshape(x.shape[0], -1)
            lo, hi = flat.amin(1), flat.amax(1)
            out = torch.maximum(torch.minimum(out, hi.view(-1, 1, 1, 1)), lo.view(-1, 1, 1, 1))
        return out
    # in-plane: the low-resolution axis becomes the batch of 2D slices
    inplane = [s for i, s in enumerate(shape) if i != axis]
    moved = x.movedim(axis + 1, 0)  # (n_slices, C, a, b)
    if tuple(moved.shape[2:]) == tuple(inplane):  # identity in-plane (logits back to the same grid): no copy
        return _along_axis(x, axis, shape[axis], order_z)
    out = _interp(moved, inplane, order)
    if order >= 2:  # nnU-Net resizes slice by slice, so skimage clips to each slice's range
        lo = moved.amin(dim=(2, 3), keepdim=True)
        hi = moved.amax(dim=(2, 3), keepdim=True)
        out = torch.maximum(torch.minimum(out, hi), lo)
    out = out.movedim(0, axis + 1)
    return _along_axis(out, axis, shape[axis], order_z)


def resample_argmax(logits: torch.Tensor, shape, current_spacing, new_spacing, order=1, order_z=0,
                    force_separate_z=None, group: int = 4) -> torch.Tensor:
    """argmax over classes of the resampled logits, streaming `group` channels at a time (uint8).

    The resampled values are rounded to the logits' own dtype before the argmax, as nnU-Net's
    resampling writes them into an array of its input's dtype (float16): ties then go to the lower
    class, as numpy's argmax sends them."""
    best_val = best_idx = None
    for start in range(0, logits.shape[0], group):
        part = resample(logits[start:start + group].float(), shape, current_spacing, new_spacing, order, order_z,
                        force_separate_z).to(logits.dtype)
        val, idx = part.max(0)
        idx = (idx + start).to(torch.uint8)
        if best_val is None:
            best_val, best_idx = val, idx
        else:
            better = val > best_val
            best_val = torch.where(better, val, best_val)
            best_idx = torch.where(better, idx, best_idx)
        del part
    return best_idx


def _labels_resized(seg: torch.Tensor, size, order: int) -> torch.Tensor:
    """batchgenerators' resize_segmentation (0.25.5, what nnU-Net uses) on (N, *spatial) label maps: each
    label's indicator resized (float64), the label with the highest score wins; an exact tie goes to the
    nearest-neighbour label when it is among the tied ones, else to the smallest label."""
    labels = torch.unique(seg)
    nn_idx = torch.searchsorted(labels, _interp(seg[:, None].double(), size, 0)[:, 0].to(labels.dtype))
    if len(labels) == 1:
        return labels[0].expand(seg.shape[0], *size).clone()
    best = win = nn_top = None
    for i, c in enumerate(labels):
        score = _interp((seg == c).double()[:, None], size, order)[:, 0]
        is_nn = nn_idx == i
        if best is None:
            best, win, nn_top = score, torch.zeros_like(nn_idx), is_nn & (score > 0)
            continue
        nn_top |= (score == best) & (score > 0) & is_nn
        better = score > best
        nn_top = torch.where(better, is_nn, nn_top)
        win = torch.where(better, i, win)
        best = torch.maximum(best, score)
    win = torch.where(nn_top, nn_idx, win)
    return labels[win]


def resample_label_channels(seg: torch.Tensor, labels, shape, current_spacing, new_spacing, order=1, order_z=0,
                            force_separate_z=None) -> torch.Tensor:
    """A label map (spatial dims only; -1 outside the image's non-zero mask, as nnU-Net's cropping marks it)
    resampled as nnU-Net's resampling_fn_seg does, then one channel per label in `labels` (float 0/1): the
    cascade's previous-stage input."""
    shape = tuple(int(s) for s in shape)
    if tuple(seg.shape) != shape:
        do_sep, axis = separate_z(current_spacing, new_spacing, force_separate_z)
        if not do_sep:
            seg = _labels_resized(seg[None], shape, order)[0]
        else:
            inplane = [s for i, s in enumerate(shape) if i != axis]
            seg = _labels_resized(seg.movedim(axis, 0), inplane, order).movedim(0, axis)
            if seg.shape[axis] != shape[axis]:
                if order_z == 0:  # nearest on the label values themselves
                    seg = _along_axis(seg[None], axis, shape[axis], 0)[0]
                else:
                    out = torch.zeros(shape, dtype=seg.dtype, device=seg.device)
                    for c in torch.unique(seg).tolist():
                        part = _along_axis((seg == c).float()[None], axis, shape[axis], order_z)[0]
                        out[torch.round(part) > 0.5] = c
                    seg = out
    return torch.stack([seg == c for c in labels]).float()
