"""The exported zip of an nnU-Net dataset (what find_best_configuration chose, an ensemble or a single
configuration, with postprocessing) as WEIGHTS: make build ships only what inference reads, and the
organisers' docker run gives nnU-Net's answer."""
import os
import shutil
import subprocess
import sys

import pytest
import SimpleITK as sitk

from amoskit import REPO
from amoskit.bench import nnunet_kinds
from conftest import remove_team_image, team_image

pytestmark = [pytest.mark.docker, pytest.mark.pipeline, pytest.mark.agreement, pytest.mark.slow]
TEAM = "kindsteam"


@pytest.fixture(scope="module")
def zip_image(docker_client, local_base_image, wheelhouse_dir, zoo, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "build-zip.log"
    yield team_image(docker_client, TEAM, log, local_base_image, wheelhouse_dir, f"WEIGHTS={zoo['zip']}")
    remove_team_image(docker_client, TEAM)


def test_build_says_what_runs_and_ships_only_what_inference_reads(zip_image, docker_client, zoo):
    _, log = zip_image
    chosen = [m["configuration"] for m in zoo["find_best"]["selected"]]
    assert "weights: nnU-Net v2" in log and "inference_information.json" in log
    assert all(c in log.split("weights:", 1)[1].splitlines()[0] for c in chosen)
    assert "left out" in log and "copied for the image" in log
    assert "engine: fast (the plans' network and nnU-Net's inference" in log   # ENGINE empty: make build chose
    listing = docker_client.containers.run(f"{TEAM}:latest", ["sh", "-c", "cd /workspace/weights && find . -type f"],
                                           remove=True).decode().split()
    assert "./amosseg_choice.json" in listing
    assert not [f for f in listing if "validation" in f or f.endswith((".png", ".txt", "checkpoint_best.pth"))]
    assert sum(f.endswith("checkpoint_final.pth") for f in listing) == len(chosen)  # fold 0 of each
    keys = docker_client.containers.run(f"{TEAM}:latest", ["python", "-c", (
        "import glob, torch; print(sorted({k for p in glob.glob('weights/*/fold_*/*.pth') "
        "for k in torch.load(p, weights_only=False)}))")], remove=True).decode()
    assert "optimizer_state" not in keys and "network_weights" in keys   # the weights stage slimmed them


def test_organisers_run_gives_the_engines_answer(zip_image, zoo, tmp_path):
    """The organisers' line (TTA on, as shipped) answers exactly as the engine on the host does with the
    zip itself, TTA on; that engine's agreement with nnU-Net per kind is tests/test_engine_nnunet_kinds.py
    (nnU-Net's references are TTA off)."""
    out = tmp_path / "out"
    proc = subprocess.run(["make", "--no-print-directory", "run", f"TEAMNAME={TEAM}", f"INPUT={zoo['inputs']}",
                           f"OUTPUT={out}"], cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    host = tmp_path / "host"
    env = {**os.environ, "INPUT_DIR": zoo["inputs"], "OUTPUT_DIR": str(host), "MODEL_DIR": zoo["zip"], "TTA": "1",
           "FORCE_CPU": "1"}
    ran = subprocess.run([sys.executable, str(nnunet_kinds.SCRIPT)], env=env, capture_output=True, text=True,
                         timeout=1800)
    assert ran.returncode == 0, ran.stdout[-3000:]
    for case in sorted(host.glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(out / case.name)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(case)))
        assert a.shape == b.shape and (a == b).mean() >= 0.9999, case.name
    shutil.rmtree(out, ignore_errors=True)
