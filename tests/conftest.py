"""Shared fixtures: a real Docker engine, the real image built once per session, real sample cases.

Integration tests (marker `docker`) skip with the reason when no engine answers, unless
REQUIRE_DOCKER=1 (CI), where that is a failure. The image is built once, through `make build`,
from the local debootstrap base and the offline wheelhouse (torch 2.13.0 CPU), so the tests also
run on machines without a registry.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from amoskit import REPO
from amoskit.daemon import connect as daemon

# the interpreter running pytest (make test: .venv) also runs the tools: a scratch venv with
# another torch tests itself
PY = sys.executable


def tool(module: str) -> list[str]:
    """The command line that runs one of the host tools (`python -m amoskit...`) with PY."""
    return [PY, "-m", module]


REQUIRE_DOCKER = os.environ.get("REQUIRE_DOCKER") == "1"
os.environ["AMOSKIT_NO_LOCAL_MK"] = "1"   # a developer's local.mk (make config) never reaches a test
TEST_TEAMNAME = "testteam"
TEST_TORCH_VERSION = "2.13.0"  # the local CPU wheel (never a multi-GB CUDA build in tests)
LOCAL_BASE_IMAGE = os.environ.get("LOCAL_BASE_IMAGE", "amosseg-base:bookworm")
WHEELHOUSE = Path(os.environ.get("TEST_WHEELHOUSE", REPO / "wheelhouse"))
WEIGHTS = Path(os.environ.get("WEIGHTS", REPO / "weights"))
# Planted in the repository for the duration of the session's one build: a secret must never reach
# the image (tests/test_pipeline_image.py looks for these tokens by content).
SECRET_TOKEN = f"canary-{uuid.uuid4().hex}"
SECRET_FILES = {
    ".env": f"AWS_ACCESS_KEY_ID=AKIA{SECRET_TOKEN[-16:].upper()}\nAWS_SECRET_ACCESS_KEY={SECRET_TOKEN}\n",
    "id_rsa": ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
               f"b3BlbnNzaC1rZXktdjEAAAAA{SECRET_TOKEN}\n-----END OPENSSH PRIVATE KEY-----\n"),
}

_engine: tuple | None = None


def engine():
    """(client, reason) of the session's one attempt to reach the engine."""
    global _engine
    if _engine is None:
        _engine = daemon.try_connect()
    return _engine


def no_engine(reason: str):
    message = f"no Docker engine: {reason}"
    if REQUIRE_DOCKER:
        pytest.fail(f"REQUIRE_DOCKER=1 but {message}", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(config, items):
    """Integration tests skip up front (with the reason) when no engine answers."""
    if REQUIRE_DOCKER or not any("docker" in item.keywords for item in items):
        return
    client, reason = engine()
    if client is None:
        skip = pytest.mark.skip(reason=f"no Docker engine (set REQUIRE_DOCKER=1 to fail instead): {reason}")
        for item in items:
            if "docker" in item.keywords:
                item.add_marker(skip)


def run_logged(cmd: list[str], log: Path, **kw) -> subprocess.CompletedProcess:
    """Run a (long) command with its output in a log file; fail the test with the log's tail."""
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, **kw)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}); last lines of {log}:\n{tail}",
                    pytrace=False)
    return proc


@pytest.fixture(scope="session")
def docker_client():
    client, reason = engine()
    if client is None:
        no_engine(reason)
    return client


@pytest.fixture(scope="session")
def local_base_image(docker_client, tmp_path_factory):
    """The local debootstrap base image, built once via `make base-image` if missing."""
    from docker.errors import ImageNotFound
    try:
        docker_client.images.get(LOCAL_BASE_IMAGE)
    except ImageNotFound:
        log = tmp_path_factory.mktemp("logs") / "base-image.log"
        run_logged(["make", "--no-print-directory", "base-image", f"LOCAL_BASE_IMAGE={LOCAL_BASE_IMAGE}"], log)
    return LOCAL_BASE_IMAGE


@pytest.fixture(scope="session")
def wheelhouse_dir(tmp_path_factory):
    """The offline wheelhouse (torch 2.13.0 CPU + inference requirements); quick when present."""
    log = tmp_path_factory.mktemp("logs") / "wheelhouse.log"
    run_logged(["make", "--no-print-directory", "wheelhouse", f"WHEELHOUSE={WHEELHOUSE}",
                f"TORCH_VERSION={TEST_TORCH_VERSION}", "TORCH_INDEX_URL="], log)
    return WHEELHOUSE


@dataclass(frozen=True)
class BuiltImage:
    teamname: str
    tag: str
    image_id: str
    version: str
    base_image: str
    builder_tag: str
    secret_token: str
    planted_secrets: tuple[str, ...]
    weights_dir: str
    build_log: Path


def plant_secrets() -> list[Path]:
    """Put a .env and an id_rsa where a careless user would: repo root, inference/, weights/."""
    planted = []
    for folder in (REPO, REPO / "inference", WEIGHTS):
        if not folder.is_dir():
            continue
        for name, text in SECRET_FILES.items():
            path = folder / name
            if path.exists():  # never overwrite a real file
                continue
            path.write_text(text)
            planted.append(path)
    return planted


@pytest.fixture(scope="session")
def zoo():
    """The nnU-Net zoo's manifest (amoskit.devtools.nnunet_zoo: built once per clone, then cached)."""
    from amoskit.bench import nnunet_kinds
    return nnunet_kinds.load_zoo()


def team_image(client, team: str, log: Path, base_image: str, wheelhouse: Path, *variables: str):
    """`make build TEAMNAME=team VARIABLES...` from the test base and wheelhouse (torch 2.13.0 CPU),
    for a fixture to yield; afterwards `remove_team_image`. Returns (process, build log text)."""
    proc = run_logged(["make", "--no-print-directory", "build", f"TEAMNAME={team}",
                       f"TORCH_VERSION={TEST_TORCH_VERSION}", "TORCH_INDEX_URL=", f"WHEELHOUSE={wheelhouse}",
                       f"BASE_IMAGE={base_image}", *variables], log, env={**os.environ, "COLUMNS": "200"})
    return proc, log.read_text()


def remove_team_image(client, team: str) -> None:
    """Both tags make build gave the image (whatever is already gone)."""
    for tag in (f"{team}:latest", f"{team}:{(REPO / 'VERSION').read_text().strip()}"):
        try:
            client.images.remove(tag, force=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


@pytest.fixture(scope="session")
def built_image(docker_client, local_base_image, wheelhouse_dir, tmp_path_factory):
    """The real image, built once per session with `make build` (testteam, torch 2.13.0 CPU)."""
    log = tmp_path_factory.mktemp("logs") / "build.log"
    version = (REPO / "VERSION").read_text().strip()
    planted = plant_secrets()
    try:
        run_logged(["make", "--no-print-directory", "build", f"TEAMNAME={TEST_TEAMNAME}",
                    f"TORCH_VERSION={TEST_TORCH_VERSION}", "TORCH_INDEX_URL=",
                    f"WHEELHOUSE={wheelhouse_dir}", f"BASE_IMAGE={local_base_image}",
                    f"WEIGHTS={WEIGHTS}"], log, env={**os.environ, "COLUMNS": "160"})
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    image = docker_client.images.get(f"{TEST_TEAMNAME}:latest")
    return BuiltImage(teamname=TEST_TEAMNAME, tag=f"{TEST_TEAMNAME}:latest", image_id=image.id,
                      version=version, base_image=local_base_image,
                      builder_tag=f"{TEST_TEAMNAME}-builder:{version}", secret_token=SECRET_TOKEN,
                      planted_secrets=tuple(str(p) for p in planted), weights_dir=str(WEIGHTS),
                      build_log=log)


@pytest.fixture(scope="session")
def sample_cases(tmp_path_factory):
    """A folder with images/ and labels/: 2 synthetic CT cases from amoskit.data.samples."""
    out = tmp_path_factory.mktemp("samples")
    run_logged([*tool("amoskit.data.samples"), "--out", str(out), "--count", "2"],
               tmp_path_factory.mktemp("logs") / "samples.log")
    assert sorted(p.name for p in (out / "images").iterdir()), "make_samples.py wrote no images"
    return out
