"""Sliding-window inference with nnU-Net's tiling, Gaussian weighting and mirroring TTA.

Why: answers must match nnU-Net's (step 0.5, Gaussian sigma = patch/8 scaled to max 10, all
mirror combinations), but tiles are batched and folds are evaluated per batch so the network
runs at its batched speed.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import torch


def tile_starts(image_size, patch, step=0.5) -> list:
    """nnU-Net's compute_steps_for_sliding_window."""
    out = []
    for size, p in zip(image_size, patch):
        n = int(math.ceil((size - p) / (p * step))) + 1
        actual = (size - p) / (n - 1) if n > 1 else 0
        out.append([int(np.round(actual * i)) for i in range(n)])
    return out


def gaussian_map(patch, sigma_scale=1 / 8, value_scale=10.0, device="cpu", dtype=torch.float32) -> torch.Tensor:
    """What scipy's gaussian_filter of a centred delta gives (truncate=4), scaled to max 10, in `dtype`,
    zeros (after the cast: float16 flushes the far corners) replaced by the smallest value, as nnU-Net's
    compute_gaussian does."""
    g = None
    for n in patch:
        c, sigma = n // 2, n * sigma_scale
        radius = int(4.0 * sigma + 0.5)
        x = np.arange(n) - c
        w = np.exp(-0.5 * (x / sigma) ** 2)
        w[np.abs(x) > radius] = 0
        g = w if g is None else np.multiply.outer(g, w)
    g = torch.from_numpy(g / g.max() * value_scale).to(device=device, dtype=dtype)
    g[g == 0] = g[g > 0].min()
    return g


def pad_to_patch(data: torch.Tensor, patch):
    """Pad the last len(patch) dims of (C, *spatial) with zeros to at least `patch`, like nnU-Net's
    pad_nd_image; returns the slicer that takes the padding off again."""
    lead = data.ndim - len(patch)
    pads, slicer = [], [slice(None)] * lead
    for size, p in zip(data.shape[lead:], patch):
        diff = max(0, p - size)
        lo = diff // 2
        pads.append((lo, diff - lo))
        slicer.append(slice(lo, lo + size))
    if any(a or b for a, b in pads):
        flat = [v for a, b in reversed(pads) for v in (a, b)]
        data = torch.nn.functional.pad(data, flat, value=0.0)
    return data, tuple(slicer)


def tile_slicers(spatial, patch) -> list[tuple]:
    """nnU-Net's sliding-window slicers over the spatial dims: a 2d patch tiles every slice of a 3-D case."""
    if len(patch) < len(spatial):
        steps = tile_starts(spatial[1:], patch)
        return [(d, *(slice(s, s + p) for s, p in zip(st, patch)))
                for d in range(spatial[0]) for st in itertools.product(*steps)]
    return [tuple(slice(s, s + p) for s, p in zip(st, patch)) for st in itertools.product(*tile_starts(spatial, patch))]


def mirror_combinations(axes) -> list:
    axes = [a + 2 for a in axes]
    return [()] + [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]


@torch.inference_mode()
def predict_logits(networks, data: torch.Tensor, patch, num_classes: int, mirror_axes=(), batch_size=1,
                   compute_device="cpu", results_device="cpu", autocast=False, progress=None,
                   logits_dtype=torch.float32) -> torch.Tensor:
    """Gaussian-weighted average of all tiles (and flips, and folds) -> (C, *spatial) in `logits_dtype`.

    float16 is what nnU-Net (2.8) accumulates in on every device: logits, the Gaussian and its sum
    all in half precision, which also flushes the Gaussian's far corners, so voxels that only tile
    corners reach get logits near 0 there. Doing the same gives nnU-Net's answer at those voxels, and
    halves the largest buffer (16 logit channels on the target grid: 6 GB instead of 12 for a
    512 x 512 x 600 CT). float32 (the overflow retry) keeps everything in float32.
    """
    data, unpad = pad_to_patch(data, patch)
    spatial = data.shape[1:]
    all_slicers = tile_slicers(spatial, patch)
    gauss = gaussian_map(patch, device=results_device, dtype=logits_dtype)
    logits = torch.zeros((num_classes, *spatial), dtype=logits_dtype, device=results_device)
    weight = torch.zeros(spatial, dtype=logits_dtype, device=results_device)
    flips = mirror_combinations(mirror_axes)
    scale = 1.0 / (len(flips) * len(networks))
    for b in range(0, len(all_slicers), batch_size):
        slicers = all_slicers[b:b + batch_size]
        tiles = torch.stack([data[(slice(None), *sl)] for sl in slicers]).to(compute_device, non_blocking=True)
        acc = None
        with torch.autocast("cuda", dtype=torch.float16, enabled=autocast):
            for net in networks:
                for axes in flips:
                    x = torch.flip(tiles, axes) if axes else tiles
                    y = net(x)
                    y = torch.flip(y, axes) if axes else y
                    acc = y.float() if acc is None else acc + y.float()
        acc = (acc * scale).to(results_device) * gauss
        for i, sl in enumerate(slicers):
            logits[(slice(None), *sl)] += acc[i]
            weight[sl] += gauss
        if progress is not None:
            progress(len(slicers))
    logits /= weight
    return logits[unpad]
