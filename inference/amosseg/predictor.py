"""One case from raw array to label map: nnU-Net's preprocessing, sliding window and export.

Why: the same maths as nnU-Net's predictor (transpose, crop to non-zero, normalise, resample,
sliding window, resample logits back, argmax, paste, transpose back), with every heavy step in
torch on the device in use, so a GPU does in milliseconds what nnU-Net does on the CPU.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from .model import Model
from .resample import new_shape, resample, resample_argmax
from .sliding_window import predict_logits


@dataclass
class Prepared:
    data: torch.Tensor  # (1, *target_shape) normalised, resampled, on the compute device or CPU
    bbox: tuple  # crop box in the transposed array
    shape_transposed: tuple  # full transposed shape (before cropping)
    shape_cropped: tuple  # before resampling
    spacing_transposed: tuple
    seconds: dict = field(default_factory=dict)


def crop_box(array: np.ndarray) -> tuple:
    """Bounding box of non-zero voxels (nnU-Net's crop_to_nonzero); the whole image if all zero."""
    nz = array != 0
    box = []
    for axis in range(array.ndim):
        other = tuple(a for a in range(array.ndim) if a != axis)
        hit = np.flatnonzero(nz.any(axis=other))
        box.append((int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, array.shape[axis]))
    return tuple(box)


def normalise(x: torch.Tensor, model: Model) -> torch.Tensor:
    if model.normalization == "CTNormalization":
        p = model.intensity
        x = torch.clamp(x, p["percentile_00_5"], p["percentile_99_5"])
        return (x - p["mean"]) / max(p["std"], 1e-8)
    mean, std = x.mean(), x.std(unbiased=False)
    return (x - mean) / torch.clamp(std, min=1e-8)


def preprocess(array: np.ndarray, spacing_zyx, model: Model, device) -> Prepared:
    t0 = time.perf_counter()
    tf = model.transpose_forward
    arr = np.transpose(array, tf)
    spacing = tuple(spacing_zyx[i] for i in tf)
    box = crop_box(arr)
    cropped = arr[tuple(slice(a, b) for a, b in box)]
    x = torch.from_numpy(np.ascontiguousarray(cropped, dtype=np.float32)).to(device)[None]
    x = normalise(x, model)
    target = new_shape(cropped.shape, spacing, model.spacing)
    x = resample(x, target, spacing, model.spacing, model.data_order, model.data_order_z, model.force_separate_z)
    return Prepared(x.contiguous(), box, arr.shape, cropped.shape, spacing,
                    {"preprocess": time.perf_counter() - t0})


def keep_largest_component(seg: np.ndarray, labels: tuple) -> np.ndarray:
    """nnU-Net postprocessing: within the union of `labels`, keep the largest 6-connected part."""
    mask = np.isin(seg, labels)
    if not mask.any():
        return seg
    cc = sitk.GetArrayFromImage(sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8)), False)))
    seg = seg.copy()
    seg[mask & (cc != 1)] = 0
    return seg


def _all_finite(logits: torch.Tensor) -> bool:
    """One channel at a time: a full-size mask would cost half the float16 logits again at peak."""
    return all(bool(torch.isfinite(channel).all()) for channel in logits)


def predict(prep: Prepared, model: Model, compute_device, stitch_device, tta=True, batch_size=1,
            progress=None, logits_dtype=None) -> tuple[np.ndarray, dict]:
    """Logits by sliding window, resampled back, argmax, pasted, transposed back (uint8).

    logits_dtype None: float16 where the logits live in GPU memory (as nnU-Net does), float32 on the
    CPU, where half arithmetic is slow and host memory is the larger pool.
    """
    seconds = {}
    sync = torch.cuda.synchronize if torch.device(compute_device).type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    args = (model.networks, prep.data.to(stitch_device), model.patch_size, model.num_classes,
            model.mirror_axes if tta else (), batch_size, compute_device, stitch_device)
    autocast = torch.device(compute_device).type == "cuda"
    if logits_dtype is None:
        logits_dtype = torch.float16 if torch.device(stitch_device).type == "cuda" else torch.float32
    half = logits_dtype == torch.float16
    logits = predict_logits(*args, autocast=autocast, progress=progress, logits_dtype=logits_dtype)
    if half and not _all_finite(logits):  # float16 overflow (|logit| sums > 65504): redo all in float32
        del logits
        logits = predict_logits(*args, autocast=False, progress=None, logits_dtype=torch.float32)
        seconds["float32_retry"] = 1.0
    sync()
    seconds["network"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    seg = resample_argmax(logits, prep.shape_cropped, model.spacing, prep.spacing_transposed, model.prob_order,
                          model.prob_order_z, model.force_separate_z)
    del logits
    full = torch.zeros(prep.shape_transposed, dtype=torch.uint8, device=seg.device)
    full[tuple(slice(a, b) for a, b in prep.bbox)] = seg
    out = full.permute(*model.transpose_backward).contiguous().cpu().numpy()
    for labels in model.postprocessing:
        out = keep_largest_component(out, labels)
    seconds["export"] = time.perf_counter() - t0
    return out, seconds


def predict_with_fallback(prep, model, dev, tta, batch):
    """GPU; on out-of-memory retry with stitching on the CPU, then entirely on the CPU."""
    if dev.type != "cuda":
        labels, secs = predict(prep, model, dev, dev, tta, batch)
        return labels, secs, "cpu"
    try:
        labels, secs = predict(prep, model, dev, dev, tta, batch)
        return labels, secs, "gpu"
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
    try:
        labels, secs = predict(prep, model, dev, torch.device("cpu"), tta, batch)
        return labels, secs, "GPU out of memory: stitched on the CPU"
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
    cpu = torch.device("cpu")
    for net in model.networks:
        net.to(cpu)
    try:
        labels, secs = predict(prep, model, cpu, cpu, tta, 1)
    finally:
        for net in model.networks:
            net.to(dev)
    return labels, secs, "GPU out of memory: ran entirely on the CPU"
