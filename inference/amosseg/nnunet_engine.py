"""nnU-Net's own predictor behind the runner: the exact engine for models the fast engine cannot run.

Why: a custom trainer may override the network or inference, and a network class may be unknown to
the fast engine; there the only honest answer is nnU-Net's. Same contract as the fast engine
(folders, arbitrary names, atomic writes, the device line, metrics): only the arithmetic is
nnU-Net's, step for step as nnUNetv2_predict (its predict_single_npy_array, split into its three
steps so reading and preprocessing overlap the network), nnUNetv2_ensemble (members' probabilities
summed in float32 in the members' order, then divided) and nnUNetv2_apply_postprocessing do it.
What runs is read by model_choice, as for the fast engine. A custom trainer's code is found through
nnU-Net's own `nnUNet_extTrainer` (the image sets it when built with TRAINER_CODE).
"""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from .model import resolve_model_dir
from .model_choice import choose_dir
from .model_folder import CHECKPOINT
from .network import UnsupportedModel
from .nifti_io import CaseError, write_atomically
from .postprocessing import PostprocessingError, read_steps


def _import_nnunet():
    try:
        from nnunetv2.inference.data_iterators import PreprocessAdapterFromNpy
        from nnunetv2.inference.export_prediction import convert_predicted_logits_to_segmentation_with_correct_shape
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
        from nnunetv2.postprocessing.remove_connected_components import (
            remove_all_but_largest_component_from_segmentation,
        )
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
    except ImportError as exc:
        raise UnsupportedModel(f"ENGINE=nnunet needs nnunetv2 in the image ({exc}); build it with "
                               "make build ENGINE=nnunet") from None
    return (nnUNetPredictor, PreprocessAdapterFromNpy, convert_predicted_logits_to_segmentation_with_correct_shape,
            remove_all_but_largest_component_from_segmentation, PlansManager)


def _fold_ids(fold_dirs) -> tuple:
    """fold_3 -> 3, fold_all -> 'all' (nnUNetPredictor's use_folds)."""
    ids = []
    for name in fold_dirs:
        tail = name.removeprefix("fold_")
        ids.append(int(tail) if tail.isdigit() else tail)
    return tuple(ids)


class _Case:
    """One input as nnU-Net's reader returns it, plus what the runner reports."""

    def __init__(self, name, data, props, read_seconds):
        self.name, self.data, self.props, self.read_seconds = name, data, props, read_seconds
        self.warnings: list[str] = []
        self.shape = tuple(data.shape[1:])
        self.spacing = tuple(float(s) for s in props["spacing"])
        self.array = None


class NnunetEngine:
    name = "nnunet"

    def __init__(self, model_dir: Path, folds, checkpoint: str = CHECKPOINT, tta: bool = True):
        (self._predictor_class, self._adapter, self._convert, self._keep_largest,
         self._plans_manager) = _import_nnunet()
        folder = resolve_model_dir(model_dir)
        choice = choose_dir(folder, checkpoint, folds)
        if choice.kind == "torchscript":
            raise UnsupportedModel(f"{folder}: a TorchScript model runs on the fast engine only; build without "
                                   "ENGINE=nnunet")
        if not choice.ok:
            raise UnsupportedModel(f"{folder}: {choice.problem}")
        self.choice, self.root, self.tta = choice, Path(choice.root), tta
        self.postprocessing = []
        if choice.postprocessing:
            try:
                self.postprocessing = read_steps(self.root / choice.postprocessing)
            except PostprocessingError as exc:
                raise UnsupportedModel(str(exc)) from None
        self.predictors: dict[str, object] = {}  # configuration folder -> initialised nnUNetPredictor
        # the dataset's reader/writer (plans' image_reader_writer), known before any predictor is made
        first = self.root / choice.members[0].stages()[0].folder
        self._reader = self._plans_manager(str(first / "plans.json")).image_reader_writer_class()

    # -- the runner's interface ------------------------------------------------------------------
    def set_batches(self, dev) -> int:
        """nnU-Net predicts one tile at a time; its predictors are made here, on the device in use."""
        for member in self.choice.all_members():
            p = self._predictor_class(tile_step_size=0.5, use_gaussian=True, use_mirroring=self.tta,
                                      perform_everything_on_device=dev.type == "cuda", device=dev,
                                      verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            try:
                p.initialize_from_trained_model_folder(str(self.root / member.folder), _fold_ids(member.folds),
                                                       self.choice.checkpoint)
            except (RuntimeError, ImportError, AttributeError, KeyError, TypeError, ValueError) as exc:
                # nnU-Net's "could not find trainer", or the trainer module's own import failing
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:240]
                raise UnsupportedModel(f"nnU-Net cannot load {member.folder}: {first} (a custom trainer: build "
                                       "with TRAINER_CODE=<its .py file or folder>)") from None
            self.predictors[member.folder] = p
        return 1

    def estimate_bytes(self, size_xyz, spacing_xyz, on_gpu: bool) -> int:
        """nnU-Net's peak host memory, roughly: the input, float32 probabilities at the original size per
        member (resampled logits, softmax, an ensemble's sum) and, on the CPU, the target-grid logits."""
        n = int(np.prod(size_xyz[:3]))
        classes = max(self._classes(m) for m in self.choice.all_members())
        members = len(self.choice.members)
        return n * (4 * 3 + 4 * classes * (2 + (members > 1)) + (0 if on_gpu else 4 * classes)) + 512 * 1024**2

    def read(self, path: Path):
        t0 = time.perf_counter()
        try:
            data, props = self._reader.read_images([str(path)])
        except (RuntimeError, OSError, ValueError) as exc:
            detail = str(exc).strip().splitlines()
            raise CaseError(f"nnU-Net's reader cannot read it ({(detail[-1] if detail else type(exc).__name__)[:160]});"
                            " re-export it as a valid .nii.gz") from None
        return _Case(path.name, data, props, time.perf_counter() - t0)

    def prepare(self, case, dev):
        """The first model's preprocessing, as nnU-Net's PreprocessAdapterFromNpy does it (not a cascade's
        second stage: that needs the first stage's labels)."""
        first = self.choice.members[0].stages()[0]
        prep = self._preprocess(first, case, None)
        prep.seconds["read"] = case.read_seconds
        return prep

    @staticmethod
    def target_shape(prep) -> list:
        return list(prep.data.shape[1:])

    def to_device(self, dev) -> None:
        """nnUNetPredictor moves its network at initialisation (set_batches)."""

    def describe(self, tta: bool, model_dir: Path, threads: int) -> list[str]:
        lines = []
        for member in self.choice.all_members():
            p = self.predictors[member.folder]
            cm = p.configuration_manager
            axes = p.allowed_mirroring_axes
            mirroring = f"on ({len(axes)} mirror axes)" if tta and axes else "off"
            lines.append(f"model: nnU-Net's predictor: {member.folder or self.root.name} ({p.trainer_name}, "
                         f"{type(p.network).__name__}, folds {list(_fold_ids(member.folds))}); patch "
                         f"{list(cm.patch_size)}, spacing {[round(float(v), 4) for v in cm.spacing]}, TTA {mirroring}, batch 1")
        pp = f"; postprocessing: {len(self.postprocessing)} step(s)" if self.postprocessing else ""
        lines.append(f"model: nnU-Net v2 {self.choice.kind_words} on ENGINE=nnunet (nnU-Net's own predictor){pp} "
                     f"from {model_dir}; {threads} CPU threads")
        return lines

    def predict(self, case, prep, dev, tta: bool):
        """(labels, seconds, mode): every member (cascade stages in order), ensembled and postprocessed."""
        seconds = dict(prep.seconds)  # read and the first stage's preprocessing, summed with the others
        first_stage = self.choice.members[0].stages()[0].folder
        probabilities = None
        seg = None
        ensemble = len(self.choice.members) > 1
        for member in self.choice.members:
            previous = None
            for stage in member.stages():
                last = stage is member
                if stage.folder == first_stage and previous is None and prep is not None:
                    stage_prep, prep = prep, None
                else:
                    stage_prep = self._preprocess(stage, case, previous)
                    _add(seconds, stage_prep.seconds)
                seg_or_pair = self._network_and_export(stage, stage_prep, seconds, ensemble and last)
                if ensemble and last:
                    _, probs = seg_or_pair
                    if probabilities is None:  # nnunetv2.ensembling.ensemble.average_probabilities
                        probabilities = probs if probs.dtype == np.float32 else probs.astype(np.float32)
                    else:
                        probabilities += probs
                else:
                    previous = seg = seg_or_pair
        t0 = time.perf_counter()
        if ensemble:
            probabilities /= len(self.choice.members)
            lm = self.predictors[self.choice.members[0].folder].label_manager
            seg = lm.convert_probabilities_to_segmentation(probabilities)
            del probabilities
        for labels in self.postprocessing:  # nnunetv2.postprocessing's apply_postprocessing
            seg = self._keep_largest(seg, labels_or_regions=list(labels))
        seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - t0
        case.data = None
        return np.asarray(seg), seconds, dev.type

    def write(self, labels, case, out_path: Path) -> None:
        """nnU-Net's writer (the geometry its reader recorded), through the runner's atomic rename."""
        write_atomically(out_path, lambda tmp: self._reader.write_seg(labels, str(tmp), case.props))

    # -- nnU-Net's steps ------------------------------------------------------------------------
    def _preprocess(self, member, case, previous):
        p = self.predictors[member.folder]
        t0 = time.perf_counter()
        prev = None if previous is None else previous[None].astype(np.float32)  # as rw.read_seg returns it
        ppa = self._adapter([case.data], [prev], [case.props], [None], p.plans_manager, p.dataset_json,
                            p.configuration_manager, num_threads_in_multithreaded=1, verbose=False)
        dct = next(ppa)
        return SimpleNamespace(data=dct["data"], properties=dct["data_properties"],
                               seconds={"preprocess": time.perf_counter() - t0})

    def _network_and_export(self, member, prep, seconds, probabilities: bool):
        p = self.predictors[member.folder]
        t0 = time.perf_counter()
        logits = p.predict_logits_from_preprocessed_data(prep.data).cpu()
        t1 = time.perf_counter()
        out = self._convert(logits, p.plans_manager, p.configuration_manager, p.label_manager, prep.properties,
                            return_probabilities=probabilities)
        seconds["network"] = seconds.get("network", 0.0) + t1 - t0
        seconds["export"] = seconds.get("export", 0.0) + time.perf_counter() - t1
        return out

    def _classes(self, member) -> int:
        ds = member.description.dataset or {}
        return max(2, len(ds.get("labels", {})))



def _add(seconds: dict, more: dict) -> None:
    for k, v in more.items():
        seconds[k] = seconds.get(k, 0.0) + v

