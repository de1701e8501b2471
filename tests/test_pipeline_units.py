"""Pure parts of the pipeline, checked as data: the organisers' run settings (GPU included, since no
machine here has both Docker and a GPU), output ownership, build context contents, CUDA facts."""
from __future__ import annotations

import json
import tarfile

import pytest
from docker.types import DeviceRequest

from amoskit.image import build_context
from amoskit.image import report as image_report
from amoskit import contract
from amoskit.daemon import ownership
from amoskit.verbs import run as run_image
from conftest import REPO

pytestmark = pytest.mark.pipeline


def test_gpu_settings_with_nvidia_runtime(tmp_path):
    s = run_image.container_settings("t:latest", tmp_path, tmp_path / "o", 4, ["runc", "nvidia"])
    assert s["runtime"] == "nvidia" and s["environment"] == {"NVIDIA_VISIBLE_DEVICES": "all"}
    assert s["device_requests"] == [{"Driver": "", "Count": -1, "DeviceIDs": [],
                                     "Capabilities": [["gpu"]], "Options": {}}]
    assert isinstance(s["device_requests"][0], DeviceRequest)


@pytest.mark.parametrize("runtimes", [[], ["runc"], {"io.containerd.runc.v2": {}, "runc": {}}, None])
def test_no_gpu_settings_without_nvidia_runtime(runtimes, tmp_path):
    s = run_image.container_settings("t:latest", tmp_path, tmp_path / "o", 4, runtimes)
    assert "runtime" not in s and "device_requests" not in s and s["environment"] == {}


@pytest.mark.parametrize("host, quota", [(1, 1e9), (2, 2e9), (4, 4e9), (16, 4e9), (0, 1e9)])
def test_cpu_quota_is_four_cpus_or_what_the_host_has(host, quota, tmp_path):
    assert run_image.container_settings("t:latest", tmp_path, tmp_path, host, [])["nano_cpus"] == int(quota)
    assert contract.ServerLimits.on_host(host).cpu_quota == int(quota) // 10_000


def test_container_settings_match_the_organisers_command(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    s = run_image.container_settings("team:latest", inp, out, host_cpus=8, runtimes=["runc", "nvidia"])
    assert s["command"] == ["python", "run_inference.py"]
    assert s["user"] == "root" and s["ipc_mode"] == "host" and s["network_mode"] == "none"
    assert s["nano_cpus"] == 4_000_000_000 and s["mem_limit"] == "30g"
    assert s["volumes"] == {str(inp): {"bind": "/workspace/input", "mode": "ro"},
                            str(out): {"bind": "/workspace/output", "mode": "rw"}}
    assert s["runtime"] == "nvidia" and s["environment"] == {"NVIDIA_VISIBLE_DEVICES": "all"}
    assert s["device_requests"][0]["Count"] == -1
    cpu = run_image.container_settings("team:latest", inp, out, host_cpus=2, runtimes=["runc"])
    assert "runtime" not in cpu and "device_requests" not in cpu and cpu["environment"] == {}
    assert cpu["nano_cpus"] == 2_000_000_000
    assert "entrypoint" not in s  # the image's own (none): the organisers' command runs as is


@pytest.mark.parametrize("env, uid, gid, owner", [
    ({}, 1000, 1000, (1000, 1000)),
    ({"SUDO_UID": "1001", "SUDO_GID": "1002"}, 0, 0, (1001, 1002)),
    ({"SUDO_UID": "1001"}, 0, 0, (1001, 1001)),
    ({"SUDO_UID": "1001", "SUDO_GID": "1002"}, 1000, 1000, (1000, 1000)),  # not root: itself
    ({}, 0, 0, (0, 0)),
])
def test_outputs_go_to_the_invoking_user(env, uid, gid, owner):
    assert ownership.invoking_user(env, uid, gid) == owner


def test_check_folders(tmp_path):
    (tmp_path / "in").mkdir()
    assert run_image.check_folders(tmp_path / "in", tmp_path / "out") == (tmp_path / "in", tmp_path / "out")
    (tmp_path / "file").write_text("x")
    for inp, out, words in [(tmp_path / "nope", tmp_path / "out", "does not exist"),
                            (tmp_path / "file", tmp_path / "out", "is not a folder"),
                            (tmp_path / "in", tmp_path / "in" / "sub" / "o", "is inside INPUT"),
                            (tmp_path / "in", tmp_path / "in", "is inside INPUT"),
                            (tmp_path / "in", tmp_path / "file", "exists and is not a folder")]:
        with pytest.raises(run_image.RunRefused, match=words):
            run_image.check_folders(inp, out)
    # a symlink to the input folder is the input folder
    (tmp_path / "link").symlink_to(tmp_path / "in")
    with pytest.raises(run_image.RunRefused, match="is inside INPUT"):
        run_image.check_folders(tmp_path / "link", tmp_path / "in" / "o")


@pytest.mark.parametrize("cuda, words", [
    (None, "none needed"), ("11.8", ">= 450.80.02"), ("11.0", ">= 450.36.06"),
    ("12.6", ">= 525.60.13"), ("12.1", ">= 525.60.13"), ("13.0", ">= 580"), ("10.2", "unknown"),
])
def test_min_driver_per_cuda_version(cuda, words):
    assert words in image_report.min_driver(cuda)


def test_rtx3090_support():
    assert "yes" in image_report.rtx3090_support(["sm_50", "sm_80", "sm_86", "sm_90"])
    assert "sm_80" in image_report.rtx3090_support(["sm_70", "sm_80"])
    assert "NO" in image_report.rtx3090_support(["sm_50", "sm_60", "sm_70"])


def test_size_check_limit():
    r = image_report.Report("sha256:x", size=1020, base_size=500, venv_bytes=400, weights_bytes=90,
                            code_bytes=10)
    assert r.expected == 1000 and r.size_ok
    assert not image_report.Report("sha256:x", 1021, 500, 400, 90, 10).size_ok


def test_runtime_context_takes_only_what_dockerignore_lets_in(tmp_path):
    weights = tmp_path / "weights"
    (weights / "fold_0").mkdir(parents=True)
    (weights / "dataset.json").write_text("{}")
    (weights / "plans.json").write_text("{}")
    (weights / "fold_0" / "checkpoint_final.pth").write_bytes(b"\0" * 100)
    code = tmp_path / "inference"
    (code / "amosseg" / "__pycache__").mkdir(parents=True)
    (code / "run_inference.py").write_text("print(1)\n")
    (code / "run_inference.py").chmod(0o700)
    (code / "amosseg" / "__init__.py").write_text("")
    (code / "amosseg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"x")
    (code / "tests").mkdir()
    (code / "tests" / "test_x.py").write_text("")
    for secret in (".env", "id_rsa", "id_ed25519.pub", ".git/config", "server.pem"):
        (code / secret).parent.mkdir(exist_ok=True)
        (code / secret).write_text("AWS_SECRET_ACCESS_KEY=x" if secret == ".env" else "k")
    (tmp_path / "ctx").mkdir()
    ctx = build_context.runtime_context(tmp_path / "ctx", weights, code)
    with tarfile.open(ctx.tar_path) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert set(members) == {"docker/Dockerfile.runtime", "weights/dataset.json", "weights/plans.json",
                            "weights/fold_0/checkpoint_final.pth", "inference/run_inference.py",
                            "inference/amosseg/__init__.py", "trainers/README.md"}
    assert all(m.uid == 0 and m.gid == 0 for m in members.values())
    assert members["inference/run_inference.py"].mode == 0o755  # readable by any uid
    assert members["weights/plans.json"].mode == 0o644
    assert ctx.bytes_by_folder == {"weights": 104, "inference": 9}


def test_builder_context_carries_the_wheels_only_when_given(tmp_path):
    wheels = tmp_path / "wh"
    wheels.mkdir()
    (wheels / "a-1.0-py3-none-any.whl").write_bytes(b"PK")
    (wheels / "notes.txt").write_text("x")
    online = build_context.builder_context(tmp_path, None)
    offline = build_context.builder_context(tmp_path, wheels)
    with tarfile.open(online.tar_path) as a, tarfile.open(offline.tar_path) as b:
        assert not any(n.endswith(".whl") for n in a.getnames())
        assert "wheelhouse/a-1.0-py3-none-any.whl" in b.getnames()
        assert "wheelhouse/notes.txt" not in b.getnames()
    assert online.buildargs == {"WHEELHOUSE": "docker/no-wheelhouse"}
    assert offline.buildargs == {"WHEELHOUSE": "wheelhouse"}
    (tmp_path / "no-wheels").mkdir()
    with pytest.raises(build_context.ContextError, match="holds no .whl files"):
        build_context.builder_context(tmp_path, tmp_path / "no-wheels")
    with pytest.raises(build_context.ContextError, match="is not a folder"):
        build_context.builder_context(tmp_path, tmp_path / "missing")


def test_dockerfiles_build_without_buildkit_only_features():
    for name in ("Dockerfile.build", "Dockerfile.runtime"):
        lines = (REPO / "docker" / name).read_text().splitlines()
        assert not any(ln.lstrip().startswith("# syntax") for ln in lines)
        text = "\n".join(ln for ln in lines if not ln.lstrip().startswith("#"))
        assert "--mount" not in text and "ENTRYPOINT" not in text
    runtime = (REPO / "docker" / "Dockerfile.runtime").read_text()
    order = [runtime.index(s) for s in ("COPY --from=builder /opt/venv", "COPY --from=weights /stage/weights/", "COPY inference/ /workspace/",
                                        "ARG CREATED", "LABEL")]
    assert order == sorted(order), "venv, weights, code, then the per-build values"


def test_model_folder_formats_the_engine_loads(tmp_path):
    nested = tmp_path / "nested" / "Dataset001__nnUNetPlans__3d_fullres"
    (nested / "fold_0").mkdir(parents=True)
    (nested / "fold_3").mkdir(parents=True)
    for name in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth", "fold_3/checkpoint_final.pth"):
        (nested / name).write_text("{}")
    assert build_context.check_weights(tmp_path / "nested").summary() == \
        "nnU-Net v2 single configuration: 3d_fullres (2 fold(s): fold_0, fold_3)"
    ts = tmp_path / "ts"
    ts.mkdir()
    (ts / "model.json").write_text('{"file": "net.pt"}')
    with pytest.raises(build_context.ContextError, match="net.pt is missing"):
        build_context.check_weights(ts)
    (ts / "net.pt").write_bytes(b"x")
    assert build_context.check_weights(ts).summary() == "TorchScript model"
    (ts / "model.json").write_text("[1")
    with pytest.raises(build_context.ContextError, match="model.json is not a JSON object"):
        build_context.check_weights(ts)


def test_an_ensemble_of_linked_configuration_folders_builds_with_the_real_files(tmp_path):
    """A user's ensemble folder: amosseg_choice.json beside links to the trained configurations (what
    bench-kinds does). make build's check and the context both follow the links (the check missed
    them, "is missing", while the context would have shipped them); a link loop is walked once."""
    trained = tmp_path / "results"
    for conf in ("2d", "3d_fullres"):
        for name in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth"):
            f = trained / f"nnUNetTrainer__nnUNetPlans__{conf}" / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text("{}")
    ens = tmp_path / "ensemble"
    ens.mkdir()
    names = [f"nnUNetTrainer__nnUNetPlans__{c}" for c in ("2d", "3d_fullres")]
    for n in names:
        (ens / n).symlink_to(trained / n)
    (ens / names[0] / "loop").symlink_to(ens)          # a loop through the links: walked once
    (ens / "amosseg_choice.json").write_text(json.dumps({"models": names, "folds": ["0"]}))
    choice = build_context.check_weights(ens)
    assert choice.ok and len(choice.members) == 2, choice.problem
    code = tmp_path / "code"
    code.mkdir()
    (code / "run_inference.py").write_text("print()")
    ctx = build_context.runtime_context(tmp_path, ens, code)
    with tarfile.open(ctx.tar_path) as tar:
        got = {m.name: m for m in tar.getmembers()}
    for n in names:
        assert got[f"weights/{n}/fold_0/checkpoint_final.pth"].isfile()


def test_model_choice_is_checked_before_the_build_and_baked_into_the_image(tmp_path):
    m = tmp_path / "m"
    for name in ("dataset.json", "plans.json", "fold_0/checkpoint_final.pth", "fold_all/checkpoint_final.pth",
                 "fold_0/checkpoint_best.pth"):
        (m / name).parent.mkdir(parents=True, exist_ok=True)
        (m / name).write_text("{}")
    assert build_context.check_weights(m).summary().endswith("(1 fold(s): fold_0)")      # fold_all skipped
    assert build_context.check_weights(m, "all").summary().endswith("(1 fold(s): fold_all)")
    assert build_context.check_weights(m, "", "checkpoint_best.pth").summary().endswith(
        "(1 fold(s): fold_0), checkpoint_best.pth")
    with pytest.raises(build_context.ContextError, match="FOLDS asks for fold_all but fold_all/checkpoint_best.pth is missing"):
        build_context.check_weights(m, "all", "checkpoint_best.pth")
    code = tmp_path / "code"
    code.mkdir()
    (code / "run_inference.py").write_text("print()")
    trainer = tmp_path / "my_trainer.py"
    trainer.write_text("class MyTrainer: pass\n")
    ctx = build_context.runtime_context(tmp_path, m, code, folds="0", checkpoint="checkpoint_best.pth",
                                        engine="nnunet", trainer_files=[trainer],
                                        own_trainers=["nnUNetTrainerBN"])
    assert ctx.buildargs == {"FOLDS": "0", "CHECKPOINT": "checkpoint_best.pth", "ENGINE": "nnunet",
                             "TRAINERS": "trainers", "NNUNET_OWN_TRAINERS": "nnUNetTrainerBN"}
    with tarfile.open(ctx.tar_path) as tar:
        assert {"trainers/my_trainer.py", "trainers/README.md"} <= set(tar.getnames())
    runtime = (REPO / "docker" / "Dockerfile.runtime").read_text()
    assert "ENV FOLDS=${FOLDS}" in runtime and "CHECKPOINT=${CHECKPOINT}" in runtime and "ENGINE=${ENGINE}" in runtime
