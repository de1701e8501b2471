"""nnU-Net's rules one at a time, against nnU-Net's own functions on the same arrays: postprocessing
(26-connectivity, ties kept, from the files nnU-Net writes), the cascade's label resampling, the
2d sliding window's slicers, region thresholds."""
import json
import pickle

import numpy as np
import pytest
import torch

from amosseg import postprocessing
from amosseg.resample import resample_label_channels
from amosseg.sliding_window import tile_slicers

pytestmark = [pytest.mark.engine]


def blobs(seed, shape=(20, 30, 30), labels=4):
    """A label map with several components per label, some touching only at a corner (26 vs 6)."""
    rng = np.random.default_rng(seed)
    seg = np.zeros(shape, np.uint8)
    for _ in range(25):
        c = [rng.integers(0, s) for s in shape]
        r = rng.integers(1, 4)
        sl = tuple(slice(max(0, ci - r), ci + r) for ci in c)
        seg[sl] = rng.integers(1, labels + 1)
    seg[0, 0, 0] = seg[1, 1, 1] = labels  # diagonal neighbours: one component in 26-connectivity only
    return seg


def test_keep_largest_matches_nnunet_on_labels_and_regions():
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
    for seed in range(6):
        seg = blobs(seed)
        for lr in ([1, 2, 3, 4], 2, (1, 3), [(1, 3), 4]):
            ref = remove_all_but_largest_component_from_segmentation(seg, lr)
            ours = postprocessing.keep_largest(seg, postprocessing._flatten(lr))
            np.testing.assert_array_equal(ours, ref)


def test_ties_are_kept_and_corners_connect():
    seg = np.zeros((5, 9, 9), np.uint8)
    seg[1, 1:3, 1:3] = 1    # 4 voxels
    seg[3, 4:6, 4:6] = 1    # 4 voxels, tied
    seg[0, 8, 8] = 1        # 1 voxel: removed
    out = postprocessing.keep_largest(seg, (1,))
    assert out.sum() == 8 and out[0, 8, 8] == 0
    seg[2, 3, 3] = 1        # touches both squares at corners only: one 9-voxel component in 26-connectivity
    out = postprocessing.keep_largest(seg, (1,))
    assert out.sum() == 9


def test_steps_read_from_json_and_restricted_pickle(tmp_path):
    from nnunetv2.postprocessing.remove_connected_components import remove_all_but_largest_component_from_segmentation
    fns = [remove_all_but_largest_component_from_segmentation] * 3
    kwargs = [{"labels_or_regions": [np.int64(1), np.int64(2), np.int64(3)]}, {"labels_or_regions": 2},
              {"labels_or_regions": (1, 3)}]
    with open(tmp_path / "postprocessing.pkl", "wb") as f:
        pickle.dump((fns, kwargs), f)
    assert postprocessing.read_steps(tmp_path / "postprocessing.pkl") == [(1, 2, 3), (2,), (1, 3)]
    (tmp_path / "postprocessing.json").write_text(json.dumps({
        "postprocessing_fns": [f.__name__ for f in fns],
        "postprocessing_kwargs": [{"labels_or_regions": [1, 2, 3]}, {"labels_or_regions": 2},
                                  {"labels_or_regions": [1, 3]}]}))
    assert postprocessing.read_steps(tmp_path / "postprocessing.pkl") == [(1, 2, 3), (2,), (1, 3)]  # JSON first
    (tmp_path / "postprocessing.json").unlink()
    with open(tmp_path / "postprocessing.pkl", "wb") as f:
        pickle.dump(([print], [{}]), f)  # anything but nnU-Net's function is refused, never called
    with pytest.raises(postprocessing.PostprocessingError, match="builtins.print is not allowed"):
        postprocessing.read_steps(tmp_path / "postprocessing.pkl")


@pytest.mark.parametrize("old,new", [((2.0, 1.0, 1.0), (1.5, 0.8, 0.8)),      # isotropic enough: 3-D linear
                                     ((5.0, 1.0, 1.0), (2.0, 0.8, 0.8)),      # anisotropic: in-plane, then z nearest
                                     ((1.0, 1.0, 1.0), (2.0, 2.0, 2.0))])     # downsampling
def test_previous_stage_labels_resample_like_nnunet(old, new):
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape
    from nnunetv2.utilities.label_handling.label_handling import convert_labelmap_to_one_hot
    seg = blobs(3, (12, 40, 36)).astype(np.int8)
    seg[:, :4][seg[:, :4] == 0] = -1  # outside the body, as nnU-Net's cropping marks it
    target = compute_new_shape(seg.shape, old, new)
    ref = resample_data_or_seg_to_shape(seg[None], target, old, new, is_seg=True, order=1, order_z=0,
                                        force_separate_z=None)[0]
    ref_onehot = convert_labelmap_to_one_hot(ref, [1, 2, 3, 4], np.float32)
    ours = resample_label_channels(torch.from_numpy(seg), (1, 2, 3, 4), target, old, new).numpy()
    assert ours.shape == ref_onehot.shape
    np.testing.assert_array_equal(ours, ref_onehot)


def test_2d_slicers_match_nnunet():
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class _Conf:
        patch_size = [32, 24]
    pred = nnUNetPredictor(device=torch.device("cpu"))
    pred.configuration_manager, pred.tile_step_size = _Conf(), 0.5
    for size in ((3, 70, 50), (2, 32, 24)):
        ref = [tuple(s for s in sl[1:]) for sl in pred._internal_get_sliding_window_slicers(size)]
        assert tile_slicers(size, (32, 24)) == ref


def test_slimmed_checkpoint_keeps_what_nnunet_and_we_read(tmp_path):
    """The image's weights stage drops training state; nnU-Net's predictor and our loader still load it."""
    import shutil
    from amosseg import slim_checkpoints
    from amosseg.model import load_model
    from engine_helpers import WEIGHTS
    for name in ("plans.json", "dataset.json"):
        shutil.copy(WEIGHTS / name, tmp_path / name)
    (tmp_path / "fold_0").mkdir()
    ckpt = torch.load(WEIGHTS / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    fat = {**ckpt, "optimizer_state": {"buf": torch.zeros(1_000_000)}, "logging": {"loss": [1.0]}}
    torch.save(fat, tmp_path / "fold_0" / "checkpoint_final.pth")
    before, after = slim_checkpoints.slim(tmp_path / "fold_0" / "checkpoint_final.pth")
    assert before - after > 3_900_000
    slim = torch.load(tmp_path / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert set(slim) == set(slim_checkpoints.KEEP) & set(fat)
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    pred = nnUNetPredictor(device=torch.device("cpu"))
    pred.initialize_from_trained_model_folder(str(tmp_path), use_folds=(0,))
    ours = load_model(tmp_path).first
    x = torch.randn(1, 1, *ours.patch_size)
    with torch.no_grad():
        assert torch.allclose(ours.networks[0](x), pred.network(x), atol=1e-5)
