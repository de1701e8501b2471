"""The contract, the shared records and the metrics: each rule stated once, and stated right."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amoskit import contract, metrics
from amoskit.records import PackageManifest, read_sha256_line, sha256_line
from amosseg import model_folder

pytestmark = pytest.mark.contract


@pytest.mark.parametrize("name, ok", [("abc", True), ("z", True), ("Abc", False), ("a1", False),
                                      ("a-b", False), ("", False), (None, False), ("a b", False)])
def test_teamname_rule(name, ok):
    problem = contract.teamname_problem(name, "package")
    assert (problem is None) == ok
    if not ok:
        assert "lowercase letters only" in problem and "make package TEAMNAME=myteam" in problem


def test_teamname_check_runs_without_the_virtualenv():
    """make check-teamname runs this with the system python3 before .venv exists."""
    bad = subprocess.run([sys.executable, "-S", "-m", "amoskit.contract", "teamname", "Bad"],
                         capture_output=True, text=True, cwd=Path(contract.__file__).parents[1])
    good = subprocess.run([sys.executable, "-S", "-m", "amoskit.contract", "teamname", "good"],
                          capture_output=True, text=True, cwd=Path(contract.__file__).parents[1])
    assert bad.returncode == 2 and bad.stderr.startswith("error: TEAMNAME='Bad'")
    assert good.returncode == 0 and good.stderr == ""


def test_submission_file_names(tmp_path):
    f = contract.SubmissionFiles.in_dist(tmp_path, "team", "task1")
    assert f.tarball == tmp_path / "team-task1.tar.gz"
    assert f.sha256.name == "team-task1.tar.gz.sha256"
    assert f.manifest.name == "team-task1.tar.gz.manifest.json"
    assert f.paper.name == "team-task1.pdf"
    assert (f.report_md.name, f.report_json.name, f.report_dir.name) == (
        "team-task1.verify.md", "team-task1.verify.json", "team-task1.verify")
    odd = contract.SubmissionFiles.of(tmp_path / "renamed.tgz", "team")
    assert odd.report_md.name == "renamed.tgz.verify.md" and odd.paper.name == "team-task1.pdf"


def test_labels_are_amos22s_own():
    assert list(contract.AMOS_LABELS) == list(range(16))
    assert contract.AMOS_LABELS[4] == "gall bladder" and contract.AMOS_LABELS[8] == "arota"
    assert contract.AMOS_LABEL_IDS["prostate/uterus"] == 15


def test_run_line_cli_and_sdk_describe_the_same_container(tmp_path):
    run = contract.OrganiserRun("team", tmp_path / "in", tmp_path / "out", nvidia=True, gpus="all",
                                limits=contract.ServerLimits.on_host(2), env=(("TTA", "0"),))
    cli, sdk = run.cli(), run.sdk()
    assert cli[-3:] == ["team", *sdk["command"]] and sdk["image"] == "team"
    assert cli[cli.index("--user") + 1] == sdk["user"] == "root"
    assert f"{tmp_path / 'in'}:/workspace/input/:ro" in cli
    assert sdk["volumes"][str(tmp_path / "in")] == {"bind": "/workspace/input", "mode": "ro"}
    assert cli[cli.index("--cpu-quota") + 1] == "200000" and sdk["nano_cpus"] == 2_000_000_000
    assert cli[cli.index("--memory") + 1] == sdk["mem_limit"] == "30g"
    assert "--network" in cli and sdk["network_mode"] == "none"
    assert "TTA=0" in cli and sdk["environment"]["TTA"] == "0"
    assert cli[cli.index("--gpus") + 1] == "all" and sdk["device_requests"][0]["Count"] == -1
    zero = contract.OrganiserRun("team", tmp_path, tmp_path, nvidia=True).sdk()
    assert zero["device_requests"][0]["Count"] == 0   # the organisers' own `--gpus 0`


def test_package_manifest_round_trip_and_refusals(tmp_path):
    m = PackageManifest(file="t-task1.tar.gz", teamname="t", task="task1", sha256="ab" * 32,
                        compressed_bytes=1, uncompressed_bytes=2, image_id="sha256:x",
                        config_digest="sha256:x", layer_diff_ids=["sha256:l"])
    path = tmp_path / "m.json"
    path.write_text(m.to_json())
    assert PackageManifest.read(path) == m
    path.write_text(json.dumps({**json.loads(m.to_json()), "future_key": 1}))
    assert PackageManifest.read(path) == m
    path.write_text(json.dumps({"file": "x"}))
    with pytest.raises(ValueError, match="incomplete manifest"):
        PackageManifest.read(path)
    path.write_text("[1]")
    with pytest.raises(ValueError):
        PackageManifest.read(path)


def test_sha256_sidecar_line():
    line = sha256_line("AB" * 32, "f.tar.gz")
    assert read_sha256_line(line) == ("ab" * 32, "f.tar.gz")
    assert read_sha256_line("nonsense f") == ("", "f")
    assert read_sha256_line("") == ("", "")


def test_dice_rule_for_empty_organs():
    pred = np.array([[0, 1, 1, 3]])
    ref = np.array([[0, 1, 2, 0]])
    assert metrics.dice(pred, ref, 1) == pytest.approx(2 / 3)
    assert metrics.dice(pred, ref, 2) == 0.0       # only in the reference
    assert metrics.dice(pred, ref, 3) == 0.0       # only in the prediction
    assert metrics.dice(pred, ref, 5) is None      # in neither: not scored
    assert metrics.dice_per_label(pred, ref) == {1: pytest.approx(2 / 3), 2: 0.0, 3: 0.0}
    assert metrics.dice_per_label(pred, ref, labels=[1, 5]) == {1: pytest.approx(2 / 3)}
    assert metrics.dice_per_label(pred, ref, min_ref_voxels=2) == {}
    assert metrics.agreement(pred, ref) == 0.5 and metrics.agreement(pred, ref[:, :2]) == 0.0


def test_model_folder_description_from_paths_alone():
    files = {"Dataset1/plans.json", "Dataset1/dataset.json", "Dataset1/fold_0/checkpoint_final.pth",
             "Dataset1/fold_10/checkpoint_final.pth", "Dataset1/fold_2/checkpoint_final.pth",
             "Dataset1/fold_3/checkpoint_best.pth"}
    m = model_folder.describe(files, lambda rel: {"labels": {"background": 0, "liver": 1}})
    assert m.ok and m.kind == "nnunet" and m.root == "Dataset1"
    assert m.folds == ["fold_0", "fold_2", "fold_10"] and m.labels == {"background": 0, "liver": 1}
    m = model_folder.describe({"plans.json"}, lambda rel: {}, lambda rel: 0)
    assert not m.ok and m.missing == ["dataset.json", "fold_*/checkpoint_final.pth"]
    assert m.empty == ["plans.json"] and "missing dataset.json" in m.refusal()
    two = model_folder.describe({"a/plans.json", "b/plans.json"}, lambda rel: {})
    assert not two.ok and "several model folders (a, b)" in two.refusal()
    ts = model_folder.describe({"model.json", "net.pt"}, lambda rel: {"file": "net.pt"})
    assert ts.ok and ts.kind == "torchscript" and ts.torchscript_file == "net.pt"
    bad = model_folder.describe({"model.json"}, lambda rel: [1])
    assert not bad.ok and "not a JSON object" in bad.refusal()
