"""ENGINE=nnunet end to end: a cascade trained with a custom trainer (the zoo's, handed in as
TRAINER_CODE) built into an image with nnU-Net's own predictor, run with the organisers' line, and
with TTA off equal voxel for voxel to nnUNetv2_predict's answer on the same inputs."""
import os
import shutil
import subprocess

import pytest
import SimpleITK as sitk

from amoskit import REPO
from amoskit.bench import nnunet_kinds
from conftest import remove_team_image, team_image

pytestmark = [pytest.mark.docker, pytest.mark.pipeline, pytest.mark.agreement, pytest.mark.slow]
TEAM = "fallbackteam"
TRAINER = REPO / "amoskit" / "devtools" / "nnUNetTrainer_zoo.py"
KIND = "3d_cascade_fullres"


@pytest.fixture(scope="module")
def fallback_image(docker_client, local_base_image, wheelhouse_dir, zoo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fallback")
    model, folds, reference = nnunet_kinds.model_for(zoo, KIND, tmp)
    proc, log = team_image(docker_client, TEAM, tmp / "build.log", local_base_image, wheelhouse_dir,
                           f"WEIGHTS={model}", f"FOLDS={folds}", "ENGINE=nnunet", f"TRAINER_CODE={TRAINER}")
    yield proc, log, reference
    remove_team_image(docker_client, TEAM)


def test_build_names_the_engine_and_carries_the_trainer(fallback_image, docker_client):
    proc, log, _ = fallback_image
    assert proc.returncode == 0, log[-4000:]
    assert "engine: nnunet (ENGINE=nnunet set by hand" in log
    assert "networks: 3d_lowres: nnUNetTrainer_zoo, PlainConvUNet; 3d_cascade_fullres: nnUNetTrainer_zoo" in log
    env = docker_client.images.get(f"{TEAM}:latest").attrs["Config"]["Env"]
    assert "ENGINE=nnunet" in env
    found = docker_client.containers.run(f"{TEAM}:latest", ["python", "-c", (
        "from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f; "
        "print(f('nnUNetTrainer_zoo').__module__)")], remove=True).decode()
    assert "nnUNetv2.training.nnUNetTrainer.nnUNetTrainer_zoo".lower() in found.lower()
    left = docker_client.containers.run(f"{TEAM}:latest", ["sh", "-c", (
        "ls /opt/venv/lib/python3.11/site-packages/future/backports/test 2>/dev/null | wc -l")],
        remove=True).decode().strip()
    assert left == "0"   # future's test private keys would fail verify-load's secrets row


def test_image_equals_nnunet_exactly_and_runs_the_organisers_line(fallback_image, zoo, tmp_path):
    proc, log, reference = fallback_image
    assert proc.returncode == 0, log[-4000:]
    exact = tmp_path / "exact"
    exact.mkdir()
    ran = subprocess.run(["docker", "run", "--rm", "-e", "TTA=0", "-v", f"{zoo['inputs']}:/workspace/input/:ro",
                          "-v", f"{exact}:/workspace/output/", f"{TEAM}:latest", "python", "run_inference.py"],
                         capture_output=True, text=True, timeout=1800)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert "ENGINE=nnunet (nnU-Net's own predictor)" in ran.stdout and "device: cpu" in ran.stdout
    refs = sorted(reference.glob("*.nii.gz"))
    assert len(refs) == len(zoo["cases"])
    for ref in refs:
        ours, theirs = sitk.ReadImage(str(exact / ref.name)), sitk.ReadImage(str(ref))
        assert (ours.GetSpacing(), ours.GetOrigin(), ours.GetDirection()) == \
               (theirs.GetSpacing(), theirs.GetOrigin(), theirs.GetDirection())
        assert (sitk.GetArrayFromImage(ours) == sitk.GetArrayFromImage(theirs)).all(), ref.name
    one, out = tmp_path / "one", tmp_path / "organisers"  # TTA on costs 8 forwards per tile: one case
    one.mkdir()
    shutil.copy(os.path.join(zoo["inputs"], refs[0].name), one / refs[0].name)
    run = subprocess.run(["make", "--no-print-directory", "run", f"TEAMNAME={TEAM}", f"INPUT={one}",
                          f"OUTPUT={out}"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "TTA on (3 mirror axes)" in run.stdout
    written = sitk.ReadImage(str(out / refs[0].name))
    assert written.GetSize() == sitk.ReadImage(str(refs[0])).GetSize()
