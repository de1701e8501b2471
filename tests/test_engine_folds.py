"""Which folds and which checkpoint run, as nnU-Net chooses them, on real nnU-Net checkpoints.

The demo model's fold_0 checkpoint is nnU-Net's own format; a second, different checkpoint is the
same file with one organ's output bias raised (a real checkpoint whose answer visibly differs), so
a test can tell which one ran. Every answer is compared with nnU-Net's nnUNetPredictor given the
same folds and checkpoint name.
"""
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from engine_helpers import WEIGHTS, labels_of, run_engine

from amoskit.bench.nnunet_reference import predict_files
from amoskit.data.phantoms import make_phantom
from amosseg import model_folder

pytestmark = [pytest.mark.agreement, pytest.mark.inference]

RAISED_LABEL = 6   # liver: its logit raised in the altered checkpoint


def altered_checkpoint(dst):
    """The demo checkpoint with the last layer's bias for RAISED_LABEL raised by 3."""
    ckpt = torch.load(WEIGHTS / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    weights = ckpt["network_weights"]
    bias = sorted(k for k in weights if k.startswith("decoder.seg_layers.") and k.endswith(".bias"))[-1]
    weights[bias] = weights[bias].clone()
    weights[bias][RAISED_LABEL] += 3.0
    torch.save(ckpt, dst)


def model(root, folds: dict[str, dict[str, str]]):
    """A model folder: plans + dataset of the demo; folds = {fold dir: {checkpoint name: 'demo'|'altered'}}."""
    root.mkdir(parents=True)
    for name in ("plans.json", "dataset.json"):
        shutil.copy(WEIGHTS / name, root / name)
    for fold, files in folds.items():
        (root / fold).mkdir()
        for name, kind in files.items():
            if kind == "demo":
                (root / fold / name).symlink_to(WEIGHTS / "fold_0" / "checkpoint_final.pth")
            else:
                altered_checkpoint(root / fold / name)
    return root


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    inp = tmp_path_factory.mktemp("folds") / "input"
    inp.mkdir()
    sitk.WriteImage(make_phantom(9300).image, str(inp / "phantom.nii.gz"), useCompression=True)
    return inp


def agree(ours, ref) -> float:
    return float((labels_of(ours) == labels_of(ref)).mean())


def test_default_folds_follow_nnunet():
    files = {"plans.json", "dataset.json", "fold_all/checkpoint_final.pth", "fold_1/checkpoint_final.pth",
             "fold_0/checkpoint_final.pth", "fold_2/checkpoint_best.pth"}
    m = model_folder.describe(files, lambda rel: {})
    assert m.default_folds == ["fold_0", "fold_1"]               # fold_all skipped, as nnU-Net does
    assert m.chosen_folds(("all",)) == (["fold_all"], [])
    assert m.chosen_folds(("0", "2")) == (["fold_0"], ["fold_2"])  # fold_2 lacks checkpoint_final
    alone = model_folder.describe({"plans.json", "dataset.json", "fold_all/checkpoint_final.pth"}, lambda r: {})
    assert alone.ok and alone.default_folds == ["fold_all"]
    best = model_folder.describe(files, lambda rel: {}, checkpoint="checkpoint_best.pth")
    assert best.folds == ["fold_2"] and best.summary() == "nnU-Net v2 model, 1 fold(s): fold_2 (checkpoint_best.pth)"


def test_fold_all_alone_runs_by_default(tmp_path, case):
    m = model(tmp_path / "m", {"fold_all": {"checkpoint_final.pth": "demo"}})
    proc = run_engine(case, tmp_path / "ours", MODEL_DIR=m, TTA=0)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    predict_files(m, [case / "phantom.nii.gz"], tmp_path / "ref", folds=("all",))
    assert agree(tmp_path / "ours" / "phantom.nii.gz", tmp_path / "ref" / "phantom.nii.gz") >= 0.999


def test_fold_all_beside_numbered_folds_only_on_request(tmp_path, case):
    m = model(tmp_path / "m", {"fold_0": {"checkpoint_final.pth": "demo"},
                               "fold_all": {"checkpoint_final.pth": "altered"}})
    assert run_engine(case, tmp_path / "default", MODEL_DIR=m, TTA=0).returncode == 0
    assert run_engine(case, tmp_path / "all", MODEL_DIR=m, TTA=0, FOLDS="all").returncode == 0
    predict_files(m, [case / "phantom.nii.gz"], tmp_path / "ref0", folds=(0,))
    predict_files(m, [case / "phantom.nii.gz"], tmp_path / "refall", folds=("all",))
    name = "phantom.nii.gz"
    assert agree(tmp_path / "default" / name, tmp_path / "ref0" / name) >= 0.999
    assert agree(tmp_path / "all" / name, tmp_path / "refall" / name) >= 0.999
    assert agree(tmp_path / "default" / name, tmp_path / "all" / name) < 0.995   # they really differ (nnU-Net agreement is >= 0.999)
    raised = [np.count_nonzero(labels_of(tmp_path / d / name) == RAISED_LABEL) for d in ("default", "all")]
    assert raised[1] > raised[0]


def test_checkpoint_choice(tmp_path, case):
    m = model(tmp_path / "m", {"fold_0": {"checkpoint_final.pth": "demo", "checkpoint_best.pth": "altered"}})
    proc = run_engine(case, tmp_path / "best", MODEL_DIR=m, TTA=0, CHECKPOINT="checkpoint_best.pth")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    predict_files(m, [case / "phantom.nii.gz"], tmp_path / "ref", folds=(0,), checkpoint="checkpoint_best.pth")
    predict_files(m, [case / "phantom.nii.gz"], tmp_path / "final", folds=(0,))
    name = "phantom.nii.gz"
    assert agree(tmp_path / "best" / name, tmp_path / "ref" / name) >= 0.999
    assert agree(tmp_path / "best" / name, tmp_path / "final" / name) < 0.995
    missing = run_engine(case, tmp_path / "x", MODEL_DIR=m, TTA=0, CHECKPOINT="checkpoint_latest.pth")
    assert missing.returncode == 2 and "checkpoint_latest.pth" in missing.stdout + missing.stderr
    bad = run_engine(case, tmp_path / "y", MODEL_DIR=m, TTA=0, CHECKPOINT="../evil")
    assert bad.returncode == 2 and "CHECKPOINT='../evil'" in bad.stdout + bad.stderr
