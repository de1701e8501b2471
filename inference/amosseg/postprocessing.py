"""nnU-Net's postprocessing, read from the files nnU-Net writes and applied as nnU-Net applies it.

Why: `nnUNetv2_find_best_configuration` decides per model or ensemble whether keeping only the
largest connected component (of all foreground, then of single labels or regions) helps, and
writes the chosen steps to `postprocessing.pkl` + `postprocessing.json` in
`crossval_results_folds_*/` or `ensembles/*/`. A submission must apply the same steps in the same
order with the same rule: full connectivity (26 neighbours in 3-D, what skimage's `label` does by
default in acvl_utils), every component tied for largest kept, the rest set to background.

The JSON is read first (data); the pickle only through an unpickler that accepts nothing but the
one nnU-Net function name and plain containers, so a model folder never runs code.
"""
from __future__ import annotations

import importlib
import io
import json
import pickle
from pathlib import Path

import numpy as np
import SimpleITK as sitk

KEEP_LARGEST = "remove_all_but_largest_component_from_segmentation"
_PP_MODULE = "nnunetv2.postprocessing.remove_connected_components"


class PostprocessingError(ValueError):
    """A postprocessing file this engine cannot apply exactly (the message names the file)."""


def _flatten(labels_or_regions) -> tuple[int, ...]:
    """A label, a region (tuple of labels) or a list of them -> the labels whose union is masked."""
    if isinstance(labels_or_regions, (list, tuple)):
        return tuple(sorted({v for item in labels_or_regions for v in _flatten(item)}))
    return (int(labels_or_regions),)


def _steps(names, kwargs_list, source: Path) -> list[tuple[int, ...]]:
    steps = []
    for name, kwargs in zip(names, kwargs_list):
        if name != KEEP_LARGEST:
            raise PostprocessingError(f"{source} names the postprocessing step {name}, which this engine does not "
                                      f"implement; remove it from the folder, or build with ENGINE=nnunet")
        if set(kwargs) - {"labels_or_regions", "background_label"} or kwargs.get("background_label", 0) != 0:
            raise PostprocessingError(f"{source}: unexpected arguments {sorted(kwargs)} for {name}")
        steps.append(_flatten(kwargs["labels_or_regions"]))
    return steps


# numpy scalars (nnU-Net's label lists hold numpy ints) need these to be rebuilt; nothing else is allowed
_NUMPY_GLOBALS = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}


class _NnunetUnpickler(pickle.Unpickler):
    """Plain data, numpy scalars and nnU-Net's one postprocessing function (named, never imported)."""

    def find_class(self, module, name):
        if (module, name) == (_PP_MODULE, KEEP_LARGEST):
            return KEEP_LARGEST
        if (module, name) in _NUMPY_GLOBALS:
            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a postprocessing file")


def read_steps(path: Path) -> list[tuple[int, ...]]:
    """The keep-largest-component steps of postprocessing.json (preferred) or postprocessing.pkl at `path`
    (either name given): a list of label sets, in nnU-Net's order."""
    path = Path(path)
    js, pkl = path.with_suffix(".json"), path.with_suffix(".pkl")
    if js.is_file():
        try:
            data = json.loads(js.read_text())
            return _steps(data["postprocessing_fns"], data["postprocessing_kwargs"], js)
        except (ValueError, KeyError, TypeError) as exc:
            raise PostprocessingError(f"{js} is not nnU-Net's postprocessing.json ({exc}); write it again with "
                                      f"nnUNetv2_determine_postprocessing") from None
    if pkl.is_file():
        try:
            fns, kwargs = _NnunetUnpickler(io.BytesIO(pkl.read_bytes())).load()
            return _steps(fns, kwargs, pkl)
        except (pickle.UnpicklingError, ValueError, TypeError, EOFError, KeyError, AttributeError) as exc:
            raise PostprocessingError(f"{pkl} cannot be read as nnU-Net's postprocessing.pkl ({exc}); copy "
                                      f"postprocessing.json from the same folder beside it") from None
    raise PostprocessingError(f"no postprocessing.json or postprocessing.pkl at {path.parent}; copy the folder "
                              f"nnUNetv2_find_best_configuration wrote it to")


def keep_largest(seg: np.ndarray, labels: tuple[int, ...]) -> np.ndarray:
    """Within the union of `labels`, keep every fully connected component tied for the largest; the rest
    becomes background (a new array; `seg` is not changed)."""
    mask = np.isin(seg, labels)
    if not mask.any():
        return seg
    cc = sitk.GetArrayFromImage(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.view(np.uint8)), True))
    sizes = np.bincount(cc.ravel())
    sizes[0] = 0
    keep = np.flatnonzero(sizes == sizes.max())
    out = seg.copy()
    out[mask & ~np.isin(cc, keep)] = 0
    return out


def apply(seg: np.ndarray, steps: list[tuple[int, ...]]) -> np.ndarray:
    """Every step in order, each on the result of the one before (nnU-Net's apply_postprocessing)."""
    for labels in steps:
        seg = keep_largest(seg, labels)
    return seg
