"""Write an AMOS-sized benchmark setup: an nnU-Net v2 model folder of the size AMOS22 teams train
(random weights) and CT-like cases of the size the organisers send.

Why: the demo model is tiny, so its timings say little about a real submission. The inference
issue fixes the yardstick: a PlainConvUNet of 6 stages (32, 64, 128, 256, 320, 320 features;
strides 1,2,2,2,2,2 in-plane and 1,1,2,2,2,1 in z), patch 64 x 160 x 192, target spacing
2.0 x 0.7 x 0.7 mm (z, y, x), 16 labels; cases of 512 x 512 x 160 int16 voxels at 0.7 x 0.7 x
2.5 mm. Weights are random (seeded): timing and GPU memory depend on the architecture and the
case size, not on what the network learnt; agreement with nnU-Net's predictor on the same random
model still checks the maths. `--slices 600` writes the long case for GPU_MEMORY_LIMIT_GB=24.

    python -m amoskit.devtools.amos_sized_model --model /tmp/amos-model --cases /tmp/amos-cases [--slices 160,600]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from amoskit.contract import AMOS_CASE_SHAPE, AMOS_CASE_SPACING, AMOS_LABEL_IDS as LABELS  # the case size verify-load scales to

PATCH = [64, 160, 192]
TARGET_SPACING = [2.0, 0.7, 0.7]
CASE_SPACING_XYZ = tuple(AMOS_CASE_SPACING[::-1])
FEATURES = [32, 64, 128, 256, 320, 320]
STRIDES = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]]
# AMOS-like CT foreground intensities (HU): what CTNormalization clips to and standardises with
CT_PROPS = {"max": 3071.0, "mean": 62.0, "median": 70.0, "min": -1024.0,
            "percentile_00_5": -958.0, "percentile_99_5": 1510.0, "std": 180.0}


def architecture() -> dict:
    """The plans.json `architecture` entry nnU-Net writes for this network."""
    return {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {
            "n_stages": len(FEATURES), "features_per_stage": FEATURES,
            "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * (len(FEATURES) - 1),
            "strides": STRIDES, "n_conv_per_stage": [2] * len(FEATURES),
            "n_conv_per_stage_decoder": [2] * (len(FEATURES) - 1), "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def plans() -> dict:
    probs = {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None}
    return {
        "dataset_name": "Dataset901_AMOSSized", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(AMOS_CASE_SPACING),
        "original_median_shape_after_transp": list(AMOS_CASE_SHAPE),
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
        "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": PATCH, "median_image_size_in_voxels": [200, 512, 512],
            "spacing": TARGET_SPACING, "normalization_schemes": ["CTNormalization"],
            "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0,
                                          "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0,
                                         "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": probs,
            "architecture": architecture(), "batch_dice": False}},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": CT_PROPS},
    }


def write_model(out: Path, seed: int = 0) -> int:
    """dataset.json, plans.json, fold_0/checkpoint_final.pth (random weights); returns #params."""
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    torch.manual_seed(seed)
    kw = architecture()["arch_kwargs"]
    net = PlainConvUNet(
        input_channels=1, n_stages=kw["n_stages"], features_per_stage=kw["features_per_stage"],
        conv_op=torch.nn.Conv3d, kernel_sizes=kw["kernel_sizes"], strides=kw["strides"],
        n_conv_per_stage=kw["n_conv_per_stage"], num_classes=len(LABELS),
        n_conv_per_stage_decoder=kw["n_conv_per_stage_decoder"], conv_bias=True,
        norm_op=torch.nn.InstanceNorm3d, norm_op_kwargs=kw["norm_op_kwargs"],
        nonlin=torch.nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    dataset = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 200,
               "file_ending": ".nii.gz", "name": "Dataset901_AMOSSized",
               "description": "AMOS-sized benchmark model with random weights. Not for any use."}
    p = plans()
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(p, indent=2) + "\n")
    ckpt = {"network_weights": net.state_dict(), "grad_scaler_state": None, "logging": {},
            "_best_ema": None, "current_epoch": 0,
            "init_args": {"plans": p, "configuration": "3d_fullres", "fold": 0,
                          "dataset_json": dataset, "device": "cpu"},
            "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2)}
    tmp = out / "fold_0" / ".checkpoint_final.pth.partial"
    torch.save(ckpt, tmp)
    tmp.replace(out / "fold_0" / "checkpoint_final.pth")
    return sum(v.numel() for v in net.parameters())


def ct_like(slices: int, size: int = AMOS_CASE_SHAPE[2], seed: int = 0) -> np.ndarray:
    """int16 (z, y, x) volume: air, an elliptic body of soft tissue, organs, bone, noise."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:slices, :size, :size]
    cy, cx = size / 2, size / 2
    body = ((y - cy) / (0.36 * size)) ** 2 + ((x - cx) / (0.45 * size)) ** 2 <= 1.0
    vol = np.full((slices, size, size), -1000, np.int16)
    vol[np.broadcast_to(body, vol.shape)] = 40
    for k, (oy, ox, r, hu) in enumerate([(0.0, -0.2, 0.12, 60), (0.05, 0.22, 0.08, 110),
                                         (0.1, 0.0, 0.03, 180), (-0.12, 0.1, 0.06, 30)]):
        zc = slices * (0.3 + 0.12 * k)
        blob = (((z - zc) / (0.25 * slices)) ** 2 + ((y - cy - oy * size) / (r * size)) ** 2
                + ((x - cx - ox * size) / (r * size)) ** 2) <= 1.0
        vol[blob] = hu
    spine = ((y - cy - 0.2 * size) / (0.04 * size)) ** 2 + ((x - cx) / (0.04 * size)) ** 2 <= 1
    vol[np.broadcast_to(spine, vol.shape)] = 700
    noise = rng.normal(0, 12, vol.shape).astype(np.float32)
    return np.clip(vol + noise, -1024, 3071).astype(np.int16)


def write_case(path: Path, slices: int, seed: int = 0, size: int = AMOS_CASE_SHAPE[2]) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(ct_like(slices, size, seed=seed))
    img.SetSpacing(CASE_SPACING_XYZ)
    img.SetOrigin((-179.0, -179.0, -0.5 * slices * CASE_SPACING_XYZ[2]))
    tmp = path.with_name(f".partial-{path.name}")
    sitk.WriteImage(img, str(tmp), True)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder to write")
    ap.add_argument("--cases", type=Path, help="folder for the cases (amos_sized_<slices>.nii.gz)")
    ap.add_argument("--slices", default=str(AMOS_CASE_SHAPE[0]), help="comma-separated slice counts, e.g. 160,600")
    ap.add_argument("--size", type=int, default=AMOS_CASE_SHAPE[2], help="in-plane voxels (smaller only for a dry run on a CPU)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not args.model and not args.cases:
        ap.error("give --model and/or --cases")
    if args.model:
        n = write_model(args.model, args.seed)
        print(f"model: {args.model} (PlainConvUNet {FEATURES}, {n / 1e6:.1f} M parameters, "
              f"patch {PATCH}, spacing {TARGET_SPACING}, random weights, seed {args.seed})")
    if args.cases:
        args.cases.mkdir(parents=True, exist_ok=True)
        for s in (int(v) for v in args.slices.split(",") if v):
            path = args.cases / f"amos_sized_{s}.nii.gz"
            write_case(path, s, args.seed, args.size)
            print(f"case: {path} ({args.size} x {args.size} x {s} int16 at {CASE_SPACING_XYZ} mm, "
                  f"{path.stat().st_size / 1e6:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
