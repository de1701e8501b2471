"""nnU-Net's own network-building trainer (nnUNetTrainerBN) with no TRAINER_CODE: make build picks
nnU-Net's predictor by the trainer's name, the image finds nnU-Net's module for it, and with TTA off
the image equals nnUNetv2_predict voxel for voxel on a real nnUNetTrainerBN folder
(amoskit.devtools.nnunet_own_trainer)."""
import subprocess
from pathlib import Path

import pytest
import SimpleITK as sitk

from amoskit.devtools import nnunet_own_trainer
from conftest import remove_team_image, team_image

pytestmark = [pytest.mark.docker, pytest.mark.pipeline, pytest.mark.agreement, pytest.mark.slow]
TEAM = "bnteam"


@pytest.fixture(scope="module")
def bn_model(zoo):
    return nnunet_own_trainer.build(zoo)


@pytest.fixture(scope="module")
def bn_image(docker_client, local_base_image, wheelhouse_dir, bn_model, tmp_path_factory):
    log = tmp_path_factory.mktemp("bn") / "build.log"
    yield team_image(docker_client, TEAM, log, local_base_image, wheelhouse_dir,
                     f"WEIGHTS={bn_model['model_folder']}", f"FOLDS={bn_model['folds']}")
    remove_team_image(docker_client, TEAM)


def test_build_chooses_nnunet_by_the_trainers_name_without_trainer_code(bn_image, docker_client):
    proc, log = bn_image
    assert proc.returncode == 0, log[-4000:]
    assert "engine: nnunet (nnU-Net's nnUNetTrainerBN builds its own network" in log
    assert "from nnU-Net itself" in log
    found = docker_client.containers.run(f"{TEAM}:latest", ["python", "-c", (
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f; "
        "c = f('nnUNetTrainerBN'); print(c.__module__, c.build_network_architecture.__qualname__)")],
        remove=True).decode()
    # nnU-Net's own module, moved up unchanged: found without importing primus (no timm in the image)
    assert "nnunetv2.training.nnUNetTrainer.nnUNetTrainerBN nnUNetTrainerBN.build_network_architecture" in found


def test_image_equals_nnunet_exactly(bn_image, bn_model, zoo, tmp_path):
    proc, log = bn_image
    assert proc.returncode == 0, log[-4000:]
    out = tmp_path / "out"
    out.mkdir()
    ran = subprocess.run(["docker", "run", "--rm", "-e", "TTA=0", "--user", "root",
                          "-v", f"{zoo['inputs']}:/workspace/input/:ro", "-v", f"{out}:/workspace/output/",
                          f"{TEAM}:latest", "python", "run_inference.py"],
                         capture_output=True, text=True, timeout=1800)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "ENGINE=nnunet (nnU-Net's own predictor)" in ran.stdout
    refs = sorted(Path(bn_model["reference"]).glob("*.nii.gz"))
    assert len(refs) == len(zoo["cases"])
    for ref in refs:
        ours, theirs = sitk.ReadImage(str(out / ref.name)), sitk.ReadImage(str(ref))
        assert (ours.GetSpacing(), ours.GetOrigin(), ours.GetDirection()) == \
               (theirs.GetSpacing(), theirs.GetOrigin(), theirs.GetDirection())
        assert (sitk.GetArrayFromImage(ours) == sitk.GetArrayFromImage(theirs)).all(), ref.name
