"""The built-in demo model: nnU-Net's format, small, and good on phantoms it never saw."""

import numpy as np
import pytest
import torch

from engine_helpers import WEIGHTS, dice, labels_of, run_engine

from amoskit.data.samples import make_samples

pytestmark = [pytest.mark.samples, pytest.mark.inference]


def test_checkpoint_is_nnunet_shaped_and_small():
    path = WEIGHTS / "fold_0" / "checkpoint_final.pth"
    assert path.stat().st_size <= 20 * 1024**2
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert ckpt["trainer_name"] == "nnUNetTrainer"
    assert ckpt["init_args"]["configuration"] == "3d_fullres"
    assert "network_weights" in ckpt and ckpt.get("optimizer_state") is None
    assert tuple(ckpt["inference_allowed_mirroring_axes"]) == (0, 1, 2)


def test_loads_unmodified_in_nnunet_predictor():
    from amoskit.bench.nnunet_reference import make_predictor
    pred = make_predictor(WEIGHTS, (0,), tta=True)
    assert pred.trainer_name == "nnUNetTrainer"
    assert pred.label_manager.num_segmentation_heads == 16


def test_two_fresh_phantoms_reach_dice_085(tmp_path):
    cases = make_samples(tmp_path / "s", 2, seed0=9500)  # seeds never used for training or samples
    proc = run_engine(cases[0].parent, tmp_path / "out", TTA=0)
    assert proc.returncode == 0, proc.stdout[-3000:]
    for case in cases:
        pred = labels_of(tmp_path / "out" / case.name)
        ref = labels_of(tmp_path / "s" / "labels" / case.name)
        scores = [dice(pred, ref, label) for label in range(1, 16) if (ref == label).any()]
        assert np.mean(scores) >= 0.85, f"{case.name}: mean Dice {np.mean(scores):.3f}"
