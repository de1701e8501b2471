"""Train the built-in demo model on synthetic phantoms and write an nnU-Net v2 model folder.

Why: users and tests need a real trained model on day one. This is a small nnU-Net-style
PlainConvUNet, trained with nnU-Net's preprocessing recipe (CT normalisation with foreground
percentiles, resampling to a target spacing) on phantoms from `phantoms.py`, and saved in exactly
the folder layout nnU-Net's predictor loads: dataset.json, plans.json, fold_0/checkpoint_final.pth
(no optimizer state). Seeded; runs on a 2-core CPU in under 30 minutes.

    python -m amoskit.data.train_demo --out weights
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from scipy import ndimage

from amoskit.data.phantoms import DEFAULT_SCALE, LABELS, make_phantom
from amosseg.network import build_network

TRAIN_SEEDS = range(1000, 1040)
VAL_SEEDS = range(2000, 2003)  # monitoring only; the evaluation script uses seeds 9000+ never seen here
TARGET_SPACING = [6.0, 2.5, 2.5]  # z, y, x (mm)
PATCH = [16, 80, 80]
ARCHITECTURE = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
    "arch_kwargs": {
        "n_stages": 4,
        "features_per_stage": [8, 16, 32, 64],
        "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]],
        "n_conv_per_stage": [2, 2, 2, 2],
        "n_conv_per_stage_decoder": [2, 2, 2],
        "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None,
        "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True},
    },
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
}
console = Console()


def foreground_properties(images, labels):
    """nnU-Net's per-channel foreground intensity statistics (drives CTNormalization)."""
    rng = np.random.default_rng(0)
    fg = np.concatenate([im[lb > 0][rng.integers(0, int((lb > 0).sum()), 10000)] for im, lb in zip(images, labels)])
    fg = fg.astype(np.float64)
    return {"max": float(fg.max()), "mean": float(fg.mean()), "median": float(np.median(fg)),
            "min": float(fg.min()), "percentile_00_5": float(np.percentile(fg, 0.5)),
            "percentile_99_5": float(np.percentile(fg, 99.5)), "std": float(fg.std())}


def ct_normalise(image, props):
    lo, hi = props["percentile_00_5"], props["percentile_99_5"]
    return ((np.clip(image, lo, hi) - props["mean"]) / max(props["std"], 1e-8)).astype(np.float32)


def to_target(image, label, spacing_zyx):
    """Resample like nnU-Net's training preprocessing: image in-plane cubic, z linear; labels nearest."""
    shape = np.array(image.shape)
    new_shape = np.round(shape * np.array(spacing_zyx) / np.array(TARGET_SPACING)).astype(int)
    zoom = new_shape / shape
    img = ndimage.zoom(image, (1, zoom[1], zoom[2]), order=3, mode="nearest", grid_mode=True)
    img = ndimage.zoom(img, (zoom[0], 1, 1), order=1, mode="nearest", grid_mode=True)
    lab = ndimage.zoom(label, zoom, order=0, mode="nearest", grid_mode=True)
    return img.astype(np.float32), lab.astype(np.int64)


def load_cases(seeds, props=None):
    raw = []
    for s in seeds:
        p = make_phantom(s, DEFAULT_SCALE)
        raw.append((sitk.GetArrayFromImage(p.image).astype(np.float32), sitk.GetArrayFromImage(p.label),
                    p.image.GetSpacing()[::-1]))
    if props is None:
        props = foreground_properties([r[0] for r in raw], [r[1] for r in raw])
    cases = [to_target(ct_normalise(im, props), lb, sp) for im, lb, sp in raw]
    return cases, props, raw


def sample_patch(rng, img, lab, patch):
    """A patch centred on a random voxel of a random present class (keeps small organs seen)."""
    pad = [(max(0, (p - s + 1) // 2 + 1),) * 2 for p, s in zip(patch, img.shape)]
    img = np.pad(img, pad, mode="constant", constant_values=img.min())
    lab = np.pad(lab, pad, mode="constant")
    classes = np.unique(lab)
    if rng.random() < 0.85 and len(classes) > 1:
        c = rng.choice(classes[classes > 0])
        idx = np.argwhere(lab == c)
        centre = idx[rng.integers(len(idx))]
    else:
        centre = [rng.integers(0, s) for s in lab.shape]
    start = [int(np.clip(c - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, s - p))
             for c, p, s in zip(centre, patch, lab.shape)]
    sl = tuple(slice(a, a + p) for a, p in zip(start, patch))
    return img[sl], lab[sl]


def augment(rng, img, lab):
    for ax in range(3):
        if rng.random() < 0.5:
            img, lab = np.flip(img, ax), np.flip(lab, ax)
    img = img * rng.uniform(0.9, 1.1) + rng.uniform(-0.1, 0.1)
    img = img + rng.normal(0, rng.uniform(0, 0.1), img.shape).astype(np.float32)
    return np.ascontiguousarray(img), np.ascontiguousarray(lab)


def dice_ce_loss(logits, target, n_classes):
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)
    onehot = F.one_hot(target, n_classes).permute(0, 4, 1, 2, 3).float()
    dims = (0, 2, 3, 4)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + 1e-5) / (denom + 1e-5)
    return ce + (1 - dice[1:].mean())


def patch_dice(net, val_patches, n_classes):
    net.eval()
    inter = np.zeros(n_classes)
    denom = np.zeros(n_classes)
    with torch.inference_mode():
        for img, lab in val_patches:
            pred = net(torch.from_numpy(img)[None, None]).argmax(1)[0].numpy()
            for c in range(1, n_classes):
                inter[c] += 2 * np.sum((pred == c) & (lab == c))
                denom[c] += np.sum(pred == c) + np.sum(lab == c)
    net.train()
    ok = denom > 0
    return float(np.mean(inter[ok] / denom[ok]))


def write_model_folder(out: Path, net, props, raw_cases, steps, log):
    """nnU-Net v2 trained-model folder: dataset.json, plans.json, fold_0/checkpoint_final.pth."""
    spacings = np.array([r[2] for r in raw_cases])
    shapes = np.array([r[0].shape for r in raw_cases])
    dataset = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": len(raw_cases),
               "file_ending": ".nii.gz", "name": "Dataset900_AMOSPhantom",
               "description": "Demonstration model trained on synthetic AMOS22-like CT phantoms. Not for clinical use."}
    median_shape = [int(v) for v in np.median(shapes * spacings / np.array(TARGET_SPACING), 0).round()]
    plans = {
        "dataset_name": "Dataset900_AMOSPhantom", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": [float(v) for v in np.median(spacings, 0)],
        "original_median_shape_after_transp": [int(v) for v in np.median(shapes, 0)],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": PATCH, "median_image_size_in_voxels": median_shape,
            "spacing": TARGET_SPACING, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "architecture": ARCHITECTURE, "batch_dice": False,
        }},
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": props},
    }
    (out / "fold_0").mkdir(parents=True, exist_ok=True)
    (out / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    (out / "plans.json").write_text(json.dumps(plans, indent=2) + "\n")
    checkpoint = {
        "network_weights": {k: v.detach().clone() for k, v in net.state_dict().items()},
        "grad_scaler_state": None, "logging": log, "_best_ema": None, "current_epoch": steps,
        "init_args": {"plans": plans, "configuration": "3d_fullres", "fold": 0, "dataset_json": dataset,
                      "device": "cpu"},
        "trainer_name": "nnUNetTrainer", "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    tmp = out / "fold_0" / ".checkpoint_final.pth.partial"
    torch.save(checkpoint, tmp)
    tmp.replace(out / "fold_0" / "checkpoint_final.pth")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("weights"))
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; 1 is fastest when other work shares the CPU (OpenMP spin-waits)")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    console.print(f"generating {len(TRAIN_SEEDS)} training phantoms (scale {DEFAULT_SCALE}) ...")
    train, props, raw = load_cases(TRAIN_SEEDS)
    val, _, _ = load_cases(VAL_SEEDS, props)
    vrng = np.random.default_rng(123)
    val_patches = [sample_patch(vrng, im, lb, PATCH) for im, lb in val for _ in range(6)]
    console.print(f"data ready in {time.time() - t0:.0f} s; training {args.steps} steps of batch {args.batch}")

    n_classes = len(LABELS)
    net = build_network(ARCHITECTURE, 1, n_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))
    net.train()
    log = {"step": [], "train_loss": [], "val_patch_dice": [], "seconds": []}
    running = []
    for step in range(1, args.steps + 1):
        batch = [augment(rng, *sample_patch(rng, *train[rng.integers(len(train))], PATCH)) for _ in range(args.batch)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))[:, None]
        y = torch.from_numpy(np.stack([b[1] for b in batch]))
        loss = dice_ce_loss(net(x), y, n_classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 12)
        opt.step()
        sched.step()
        running.append(loss.item())
        if step % 200 == 0 or step == args.steps:
            d = patch_dice(net, val_patches, n_classes)
            el = time.time() - t0
            for k, v in zip(log, (step, float(np.mean(running)), d, el)):
                log[k].append(v)
            console.print(f"step {step:5d}  loss {np.mean(running):.4f}  val patch Dice {d:.3f}  {el / 60:.1f} min")
            running = []
    write_model_folder(args.out, net, props, raw, args.steps, log)
    table = Table(title="demo model training")
    for col in ("steps", "final loss", "val patch Dice", "minutes"):
        table.add_column(col)
    table.add_row(str(args.steps), f"{log['train_loss'][-1]:.4f}", f"{log['val_patch_dice'][-1]:.3f}",
                  f"{(time.time() - t0) / 60:.1f}")
    console.print(table)
    console.print(f"wrote {args.out}/dataset.json, plans.json, fold_0/checkpoint_final.pth")


if __name__ == "__main__":
    main()
