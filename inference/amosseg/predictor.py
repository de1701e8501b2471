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

from . import postprocessing
from .model import Model, Pipeline
from .resample import new_shape, resample, resample_argmax, resample_label_channels
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


def nonzero_mask(array: np.ndarray) -> np.ndarray:
    """nnU-Net's create_nonzero_mask: non-zero voxels with enclosed holes filled."""
    img = sitk.GetImageFromArray((array != 0).astype(np.uint8))
    return sitk.GetArrayFromImage(sitk.BinaryFillhole(img, False, 1)).astype(bool)


def normalise(x: torch.Tensor, model: Model) -> torch.Tensor:
    if model.normalization == "CTNormalization":
        p = model.intensity
        x = torch.clamp(x, p["percentile_00_5"], p["percentile_99_5"])
        return (x - p["mean"]) / max(p["std"], 1e-8)
    mean, std = x.mean(), x.std(unbiased=False)
    return (x - mean) / torch.clamp(std, min=1e-8)


def preprocess(array: np.ndarray, spacing_zyx, model: Model, device, previous: np.ndarray | None = None) -> Prepared:
    """nnU-Net's run_case_npy for one configuration; `previous` is the label map of a cascade's first stage
    (original geometry): cropped with the image's box, resized per label, one channel per label appended."""
    t0 = time.perf_counter()
    tf = model.transpose_forward
    arr = np.transpose(array, tf)
    spacing = tuple(spacing_zyx[i] for i in tf)
    box = crop_box(arr)
    crop = tuple(slice(a, b) for a, b in box)
    cropped = arr[crop]
    x = torch.from_numpy(np.ascontiguousarray(cropped, dtype=np.float32)).to(device)[None]
    x = normalise(x, model)
    target_spacing = model.target_spacing(spacing)
    target = new_shape(cropped.shape, spacing, target_spacing)
    x = resample(x, target, spacing, target_spacing, model.data_order, model.data_order_z, model.force_separate_z)
    if model.previous_stage is not None:
        if previous is None:
            raise ValueError("a cascade stage needs its previous stage's label map")
        seg = np.transpose(previous, tf)[crop].astype(np.int16)
        seg[(seg == 0) & ~nonzero_mask(cropped)] = -1  # as nnU-Net's crop_to_nonzero marks outside the body
        seg = torch.from_numpy(seg).to(device)
        onehot = resample_label_channels(seg, model.stage_labels, target, spacing, target_spacing, model.seg_order,
                                         model.seg_order_z, model.force_separate_z)
        x = torch.cat([x, onehot.to(x.dtype)])
    return Prepared(x.contiguous(), box, arr.shape, cropped.shape, spacing,
                    {"preprocess": time.perf_counter() - t0})


def _all_finite(logits: torch.Tensor) -> bool:
    """One channel at a time: a full-size mask would cost half the float16 logits again at peak."""
    return all(bool(torch.isfinite(channel).all()) for channel in logits)


def network_logits(prep: Prepared, model: Model, compute_device, stitch_device, tta=True, batch_size=1,
                   progress=None, logits_dtype=None) -> tuple[torch.Tensor, dict]:
    """Sliding-window logits on the target grid, folds averaged.

    logits_dtype None: float16, as nnU-Net accumulates them on every device (its answer, see
    sliding_window.predict_logits); float32 again when the half sums overflow.
    """
    seconds = {}
    sync = torch.cuda.synchronize if torch.device(compute_device).type == "cuda" else (lambda: None)
    t0 = time.perf_counter()
    args = (model.networks, prep.data.to(stitch_device), model.patch_size, model.num_classes,
            model.mirror_axes if tta else (), batch_size, compute_device, stitch_device)
    autocast = torch.device(compute_device).type == "cuda"
    if logits_dtype is None:
        logits_dtype = torch.float16
    logits = predict_logits(*args, autocast=autocast, progress=progress, logits_dtype=logits_dtype)
    if logits_dtype == torch.float16 and not _all_finite(logits):  # |logit| sums > 65504: redo all in float32
        del logits
        logits = predict_logits(*args, autocast=False, progress=None, logits_dtype=torch.float32)
        seconds["float32_retry"] = 1.0
    sync()
    seconds["network"] = time.perf_counter() - t0
    return logits, seconds


def _back(model: Model, prep: Prepared) -> tuple:
    """(shape, current spacing, original spacing) of the way back to the cropped original grid."""
    return prep.shape_cropped, model.target_spacing(prep.spacing_transposed), prep.spacing_transposed


def cropped_labels(logits: torch.Tensor, prep: Prepared, model: Model) -> torch.Tensor:
    """Label map on the cropped (transposed) original grid: argmax, or a region model's thresholds."""
    shape, current, original = _back(model, prep)
    args = (model.prob_order, model.prob_order_z, model.force_separate_z)
    if model.regions is None:
        return resample_argmax(logits, shape, current, original, *args)
    seg = torch.zeros(shape, dtype=torch.uint8, device=logits.device)
    for i, label in enumerate(model.region_order):  # sigmoid > 0.5 is logit > 0; later regions overwrite
        part = resample(logits[i:i + 1].float(), shape, current, original, *args)[0].to(logits.dtype)
        seg[part > 0] = label  # rounded to the logits' dtype first, as nnU-Net's resampling stores them
    return seg


def cropped_probabilities(logits: torch.Tensor, prep: Prepared, model: Model) -> torch.Tensor:
    """Probabilities (softmax, or sigmoid per region) on the cropped original grid, in the ORIGINAL axis order."""
    shape, current, original = _back(model, prep)
    probs = resample(logits.float(), shape, current, original, model.prob_order, model.prob_order_z,
                     model.force_separate_z).to(logits.dtype).float()  # nnU-Net stores them in the logits' dtype
    probs = torch.sigmoid(probs) if model.regions is not None else torch.softmax(probs, 0)
    return probs.permute(0, *[1 + i for i in model.transpose_backward])


def uncrop(seg: torch.Tensor, prep: Prepared, model: Model) -> np.ndarray:
    """Paste a cropped, transposed label map into the whole case, in the file's axis order (uint8)."""
    full = torch.zeros(prep.shape_transposed, dtype=torch.uint8, device=seg.device)
    full[tuple(slice(a, b) for a, b in prep.bbox)] = seg
    return full.permute(*model.transpose_backward).contiguous().cpu().numpy()


@dataclass
class Devices:
    compute: object
    stitch: object
    tta: bool
    batch: int | None  # None: each model's own


def _model_input(array, spacing, model: Model, dev: Devices, seconds: dict, first: Prepared | None) -> Prepared:
    """`model`'s prepared input: `first` when that is already it; for a cascade, run the stages before
    `model` (the first one from `first`, when given) and prepare `model`'s input with the last stage's
    label map (nnU-Net: not postprocessed)."""
    previous = None
    for i, stage in enumerate(model.stages()):
        if i == 0 and first is not None:
            prep = first
        else:
            prep = _timed(seconds, "preprocess", preprocess, array, spacing, stage, dev.compute, previous)
        if stage is model:
            return prep
        logits = _add(seconds, network_logits(prep, stage, dev.compute, dev.stitch, dev.tta,
                                              dev.batch or stage.batch or 1))
        previous = _timed(seconds, "export", lambda lg: uncrop(cropped_labels(lg, prep, stage), prep, stage), logits)
        del logits
    raise AssertionError("unreachable")


def _timed(seconds, key, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t0
    return out


def _add(seconds, result):
    logits, secs = result
    for k, v in secs.items():
        seconds[k] = seconds.get(k, 0.0) + v
    return logits


def predict(prep: Prepared, pipeline: Pipeline, compute_device, stitch_device, tta=True, batch_size=None,
            array: np.ndarray | None = None, spacing=None) -> tuple[np.ndarray, dict]:
    """The case's label map in the file's geometry (uint8): `prep` is the first model's prepared input;
    cascades and ensembles also need the case's `array` and `spacing` for their other models."""
    dev = Devices(compute_device, stitch_device, tta, batch_size)
    seconds: dict = {}
    if len(pipeline.members) == 1:
        model = pipeline.members[0]
        prep = _model_input(array, spacing, model, dev, seconds, prep)
        logits = _add(seconds, network_logits(prep, model, compute_device, stitch_device, tta,
                                              batch_size or model.batch or 1))
        t0 = time.perf_counter()
        out = uncrop(cropped_labels(logits, prep, model), prep, model)
        del logits
    else:
        probs, first = None, prep
        for model in pipeline.members:
            start = first if model.stages()[0] is pipeline.first else None
            mprep = _model_input(array, spacing, model, dev, seconds, start)
            logits = _add(seconds, network_logits(mprep, model, compute_device, stitch_device, tta,
                                                  batch_size or model.batch or 1))
            t0 = time.perf_counter()
            p = cropped_probabilities(logits, mprep, model)
            del logits
            probs = p if probs is None else probs.add_(p)
            del p
            seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        probs /= len(pipeline.members)
        model = pipeline.members[0]
        if model.regions is None:
            seg = probs.argmax(0).to(torch.uint8)
        else:
            seg = torch.zeros(probs.shape[1:], dtype=torch.uint8, device=probs.device)
            for i, label in enumerate(model.region_order):
                seg[probs[i] > 0.5] = label
        del probs
        box = [first.bbox[model.transpose_backward[i]] for i in range(len(first.bbox))]  # original axis order
        full = torch.zeros(array.shape, dtype=torch.uint8, device=seg.device)
        full[tuple(slice(a, b) for a, b in box)] = seg
        out = full.cpu().numpy()
    out = postprocessing.apply(out, pipeline.postprocessing)
    seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - t0
    return out, seconds


def predict_with_fallback(prep, pipeline, dev, tta, batch, array=None, spacing=None):
    """GPU; on out-of-memory retry with stitching on the CPU, then entirely on the CPU."""
    extra = dict(array=array, spacing=spacing)
    if dev.type != "cuda":
        labels, secs = predict(prep, pipeline, dev, dev, tta, batch, **extra)
        return labels, secs, "cpu"
    try:
        labels, secs = predict(prep, pipeline, dev, dev, tta, batch, **extra)
        return labels, secs, "gpu"
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
    try:
        labels, secs = predict(prep, pipeline, dev, torch.device("cpu"), tta, batch, **extra)
        return labels, secs, "GPU out of memory: stitched on the CPU"
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
    cpu = torch.device("cpu")
    for net in pipeline.networks:
        net.to(cpu)
    try:
        prep.data = prep.data.cpu()
        labels, secs = predict(prep, pipeline, cpu, cpu, tta, 1, **extra)
    finally:
        for net in pipeline.networks:
            net.to(dev)
    return labels, secs, "GPU out of memory: ran entirely on the CPU"
