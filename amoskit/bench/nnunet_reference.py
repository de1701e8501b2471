"""Run nnU-Net v2's own predictor on a model folder: the reference our engine must agree with.

Why: agreement tests and the inference benchmark compare against the real `nnUNetPredictor`
(nnunetv2 is a test-only dependency, never inside the image).
"""
from __future__ import annotations

import time
from pathlib import Path

import torch


def make_predictor(model_dir: Path, folds=(0,), tta=False, device="cpu", checkpoint="checkpoint_final.pth"):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=tta,
                                perform_everything_on_device=device != "cpu", device=torch.device(device),
                                verbose=False, verbose_preprocessing=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=tuple(folds),
                                                   checkpoint_name=checkpoint)
    return predictor


def predict_files(model_dir: Path, inputs: list[Path], out_dir: Path, folds=(0,), tta=False, device="cpu",
                  sequential=True, processes=2, checkpoint="checkpoint_final.pth") -> float:
    """Segment `inputs` into `out_dir` under the same names; returns seconds for the prediction call."""
    out_dir.mkdir(parents=True, exist_ok=True)
    predictor = make_predictor(model_dir, folds, tta, device, checkpoint)
    lists = [[str(p)] for p in inputs]
    outs = [str(out_dir / p.name[: -len(".nii.gz")]) for p in inputs]
    t0 = time.perf_counter()
    if sequential:
        predictor.predict_from_files_sequential(lists, outs, save_probabilities=False, overwrite=True)
    else:
        predictor.predict_from_files(lists, outs, save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=processes, num_processes_segmentation_export=processes)
    return time.perf_counter() - t0
