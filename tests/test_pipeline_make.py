"""The Makefile front door refuses bad input before Docker is touched, with one line naming the fix."""
from __future__ import annotations

import os
import re
import tarfile
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.pipeline

TARGETS = ["help", "config", "setup", "samples", "train-demo", "evaluate-demo", "bench-inference", "bench-package", "base-image", "wheelhouse", "build", "run", "demo", "test",
           "clean", "bench-build", "kinds-end-to-end", "package", "verify-load", "validate", "check-teamname"]
VARIABLES = ["TEAMNAME", "TASK", "VERSION", "BASE_IMAGE", "TORCH_VERSION", "TORCH_INDEX_URL",
             "WHEELHOUSE", "INPUT", "OUTPUT", "DIST", "LABELS", "VENV", "WEIGHTS", "LOCAL_BASE_IMAGE",
             "FOLDS", "CHECKPOINT", "ENGINE", "TRAINER_CODE", "STORE", "RUN_TIMEOUT", "VERIFY_ARGS", "BENCH_ARGS"]
DEAD_ENGINE = "unix:///nonexistent/docker.sock"


@pytest.fixture(autouse=True, scope="module")
def host_venv_ready():
    """Bring the host venv up to date first, so its install output is not mistaken for a message."""
    proc = subprocess.run(["make", "--no-print-directory", "setup"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make(*args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """What the tool itself printed on stderr (make's own `make: ***` lines left out)."""
    return [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("make")]


def model_folder(root: Path, drop: str | None = None, empty: str | None = None) -> Path:
    """A small nnU-Net v2 model folder (content is irrelevant to these checks), minus `drop`."""
    weights = root / "weights"
    (weights / "fold_0").mkdir(parents=True)
    files = {"dataset.json": '{"labels": {"background": 0, "spleen": 1}}',
             "plans.json": '{"configurations": {}}', "fold_0/checkpoint_final.pth": "x" * 64}
    for name, text in files.items():
        if name != drop:
            (weights / name).write_text("" if name == empty else text)
    return weights


def test_help_lists_every_target_and_variable():
    proc = make("help")
    assert proc.returncode == 0, proc.stderr
    listed_targets = {ln.split()[0] for ln in proc.stdout.split("Variables")[0].splitlines()[1:] if ln.strip()}
    listed_vars = {ln.split()[0] for ln in proc.stdout.split("Variables")[1].splitlines()[1:] if ln.strip()}
    assert set(TARGETS) <= listed_targets
    assert set(VARIABLES) <= listed_vars
    assert "[default: demoteam]" in proc.stdout and "[default: python:3.11-slim-bookworm]" in proc.stdout


def test_default_is_help():
    assert make().stdout == make("help").stdout


def test_variable_values_carry_no_trailing_spaces():
    """`VAR ?= value  ## doc` must not leave the spaces in the value (they would break paths)."""
    proc = make("-n", "package", "verify-load")
    assert "--dist dist\n" in proc.stdout
    assert "dist/demoteam-task1.tar.gz --teamname demoteam --samples samples/images --labels samples/labels" in proc.stdout
    assert "--store auto --timeout 3600" in proc.stdout


def test_bench_inference_gets_the_fold_and_checkpoint_choice(tmp_path):
    """make bench-inference FOLDS=... CHECKPOINT=...: the benchmark's contenders read both from the
    environment, so make must export them (the trimming of the variables had dropped them)."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "FOLDS=$FOLDS CHECKPOINT=$CHECKPOINT ARGS=$*"\n')
    fake.chmod(0o755)
    proc = make("bench-inference", f"PY={fake}", "FOLDS=0,1", "CHECKPOINT=checkpoint_best.pth",
                "WEIGHTS=/m", "BENCH_ARGS=--tta 0")
    assert proc.returncode == 0, proc.stderr
    assert "FOLDS=0,1 CHECKPOINT=checkpoint_best.pth ARGS=-m amoskit.bench.inference --model /m --tta 0" in proc.stdout


def test_make_config_remembers_variables_for_people_never_for_tests(tmp_path):
    """TEAMNAME typed once: `make config` writes local.mk, the Makefile reads it before its
    defaults, the command line still wins, a bad TEAMNAME or unknown variable is refused, and
    with AMOSKIT_NO_LOCAL_MK=1 (tests, CI) it is not read at all."""
    local = tmp_path / "local.mk"
    proc = make("config", "TEAMNAME=abcteam", "RUN_TIMEOUT=900", f"LOCAL_MK={local}")
    assert proc.returncode == 0, proc.stderr
    assert "TEAMNAME = abcteam" in local.read_text()
    person = {"AMOSKIT_NO_LOCAL_MK": ""}
    out = make("-n", "verify-load", f"LOCAL_MK={local}", env=person).stdout
    assert "--teamname abcteam" in out and "--timeout 900" in out
    assert "--teamname cliteam" in make("-n", "package", "TEAMNAME=cliteam", f"LOCAL_MK={local}",
                                        env=person).stdout
    assert "--teamname demoteam" in make("-n", "package", f"LOCAL_MK={local}").stdout
    for bad in ("TEAMNAME=Bad", "NOSUCHVAR=1"):
        proc = make("config", bad, f"LOCAL_MK={local}")
        assert proc.returncode == 2 and len(error_lines(proc)) == 1, proc.stderr
    assert "TEAMNAME = abcteam" in local.read_text()            # nothing lost on a refusal


@pytest.mark.parametrize("name", ["MyTeam", "team1", "my-team", "", "my team", "équipe"])
@pytest.mark.parametrize("target", ["check-teamname", "build", "run", "package", "verify-load", "demo", "bench-build"])
def test_bad_teamname_refused_before_docker(name, target):
    # A dead engine address proves Docker is never reached: the refusal must come first.
    proc = make(target, f"TEAMNAME={name}", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode != 0
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f"TEAMNAME='{name}'" in lines[0] and "lowercase letters only" in lines[0]
    assert "Docker engine" not in proc.stdout + proc.stderr


def test_good_teamname_accepted():
    assert make("check-teamname", "TEAMNAME=abc").returncode == 0


@pytest.mark.parametrize("drop, empty, named", [
    (None, "plans.json", "weights/plans.json is empty"),
    ("plans.json", None, "weights/plans.json is missing"),
    ("dataset.json", None, "weights/dataset.json is missing"),
    ("fold_0/checkpoint_final.pth", None, "weights/fold_0/checkpoint_final.pth is missing"),
    (None, "fold_0/checkpoint_final.pth", "weights/fold_0/checkpoint_final.pth is empty"),
])
def test_incomplete_model_folder_refused_naming_the_file(tmp_path, drop, empty, named):
    weights = model_folder(tmp_path, drop=drop, empty=empty)
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={weights}", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert str(tmp_path / named.split(" is ")[0]) in lines[0] and named.split(" is ")[1] in lines[0]
    assert "README" in lines[0]


def test_fold_choice_missing_in_the_model_folder_refused(tmp_path):
    weights = model_folder(tmp_path)
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={weights}", "FOLDS=0,3", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and "FOLDS asks for fold_3 but fold_3/checkpoint_final.pth is missing" in lines[0]
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={weights}", "CHECKPOINT=checkpoint_best.pth",
                env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2 and "checkpoint_best.pth is missing" in error_lines(proc)[0]


def test_empty_and_absent_model_folder_refused(tmp_path):
    empty = tmp_path / "weights"
    empty.mkdir()
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={empty}", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2 and f"{empty}/dataset.json is missing" in proc.stderr
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={tmp_path / 'nope'}", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2 and f"{tmp_path / 'nope'}/ does not exist" in proc.stderr


def test_engine_not_reachable_one_line_how_to_start(tmp_path):
    weights = model_folder(tmp_path)
    (tmp_path / "in").mkdir()
    for args in (["build", "TEAMNAME=abc", f"WEIGHTS={weights}"],
                 ["run", "TEAMNAME=abc", f"INPUT={tmp_path / 'in'}", f"OUTPUT={tmp_path / 'out'}"]):
        proc = make(*args, env={"DOCKER_HOST": DEAD_ENGINE})
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = error_lines(proc)
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("error: cannot reach the Docker engine at " + DEAD_ENGINE)
        assert "start it" in lines[0] and "docker info" in lines[0]
        assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("case", ["missing", "file", "output-inside", "output-is-input"])
def test_run_refuses_bad_folders_before_docker(tmp_path, case):
    inp = tmp_path / "in"
    out = tmp_path / "out"
    if case == "missing":
        expected = "does not exist"
    elif case == "file":
        inp.write_bytes(b"")
        expected = "is not a folder"
    else:
        inp.mkdir()
        out = inp / "predictions" if case == "output-inside" else inp
        expected = "is inside INPUT"
    proc = make("run", "TEAMNAME=abc", f"INPUT={inp}", f"OUTPUT={out}", env={"DOCKER_HOST": DEAD_ENGINE})
    assert proc.returncode == 2
    lines = error_lines(proc)
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert not (inp / "predictions").exists() and not out.exists() or case == "output-is-input"


@pytest.mark.docker
def test_run_refuses_missing_image(tmp_path, docker_client):
    (tmp_path / "in").mkdir()
    proc = make("run", "TEAMNAME=nosuchteamimage", f"INPUT={tmp_path / 'in'}", f"OUTPUT={tmp_path / 'out'}")
    assert proc.returncode == 2
    assert "image nosuchteamimage:latest not found: build it first with make build" in proc.stderr


@pytest.mark.docker
def test_a_docker_api_error_during_make_run_is_one_line_without_traceback(tmp_path, docker_client):
    """A real engine refusal (the image has no `python`: the OCI runtime cannot start it) ends in
    one line saying what failed and what the engine said, not an SDK traceback."""
    import io as _io
    import tarfile as _tarfile
    buf = _io.BytesIO()
    with _tarfile.open(fileobj=buf, mode="w") as t:
        info = _tarfile.TarInfo("hello.txt")
        info.size = 3
        t.addfile(info, _io.BytesIO(b"hi\n"))
    docker_client.api.import_image_from_data(buf.getvalue(), repository="nopythonteam", tag="latest")
    (tmp_path / "in").mkdir()
    try:
        proc = make("run", "TEAMNAME=nopythonteam", f"INPUT={tmp_path / 'in'}",
                    f"OUTPUT={tmp_path / 'out'}")
    finally:
        docker_client.images.remove("nopythonteam:latest", force=True)
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: Docker could not start the container of nopythonteam:latest")
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not docker_client.containers.list(all=True, filters={"ancestor": "nopythonteam:latest"})


def test_api_error_lines_name_the_fix():
    from docker.errors import APIError
    from amoskit.daemon.connect import api_error_line
    err = APIError("500 Server Error", explanation="unknown or invalid runtime name: nvidia")
    line = api_error_line(err, "create the container of t:latest")
    assert line.startswith("Docker could not create the container of t:latest: unknown or invalid")
    assert "NVIDIA Container Toolkit" in line and "\n" not in line
    assert "docker system prune" in api_error_line(APIError("x", explanation="write /var/lib/docker/x: "
                                                                             "no space left on device"), "load")


@pytest.mark.docker
def test_unavailable_base_image_names_the_offline_fallback(tmp_path, docker_client):
    weights = model_folder(tmp_path)
    base = "amosseg-no-such-base-image:never"
    proc = make("build", "TEAMNAME=abc", f"WEIGHTS={weights}", f"BASE_IMAGE={base}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = error_lines(proc)
    assert len(lines) == 1, proc.stderr
    assert f"BASE_IMAGE={base} is not available locally and cannot be pulled" in lines[0]
    assert "make base-image" in lines[0] and "wheelhouse" in lines[0]


def test_private_key_under_an_innocent_name_refused(tmp_path):
    """.dockerignore stops id_rsa and .env by name; the content scan stops a renamed key; a file of
    WEIGHTS that inference does not read is not shipped at all."""
    weights = model_folder(tmp_path)
    code = tmp_path / "inference"
    code.mkdir()
    (code / "run_inference.py").write_text("print('ok')\n")
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
    (code / "notes.txt").write_text(key)
    (weights / "notes.txt").write_text(key)
    from amoskit.image import build_context
    with pytest.raises(build_context.ContextError, match=re.escape(str(code / "notes.txt"))):
        build_context.runtime_context(tmp_path, weights, code)
    (code / "notes.txt").unlink()
    ctx = build_context.runtime_context(tmp_path, weights, code)  # weights/notes.txt is left out, not shipped
    with tarfile.open(ctx.tar_path) as tar:
        assert "weights/notes.txt" not in tar.getnames() and "weights/plans.json" in tar.getnames()
    assert ctx.weights.left_out == {"logs and plots": len(key)}


def test_clean_removes_only_generated_folders(tmp_path):
    proc = make("-n", "clean")
    assert "rm -rf output dist samples .pytest_cache" in proc.stdout
    assert "wheelhouse" not in proc.stdout.split("find")[0]


def test_every_phony_target_is_defined_and_documented():
    """No placeholder: each name in .PHONY has a rule, a `## ` line for help, and a script it calls exists."""
    text = (REPO / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)$", text, re.S | re.M).group(1).replace("\\\n", " ").split()
    for target in phony:
        rule = re.search(rf"^{re.escape(target)}:[^\n]*## ", text, re.M)
        assert rule, f"make {target} has no rule with a ## help line"
    for script in set(re.findall(r"(?:scripts|docker)/[\w.]+\.sh", text)):
        assert (REPO / script).is_file(), f"the Makefile calls {script}, which does not exist"
    modules = set(re.findall(r"-m (amoskit[\w.]+)", text))
    assert modules, "the Makefile calls no host tool module"
    for module in modules:
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"the Makefile runs {module}, which does not exist"
