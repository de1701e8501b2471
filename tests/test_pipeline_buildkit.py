"""The Dockerfiles also build with BuildKit (`DOCKER_BUILDKIT=1 docker build` from the repository
root, the 20.10 CLI's built-in BuildKit), not only with the SDK's classic builder."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.pipeline, pytest.mark.buildkit, pytest.mark.slow]


def docker_cli_with_buildkit() -> str:
    """A docker CLI with BuildKit built in: 20.10's (/usr/bin/docker from docker.io); newer
    CLIs need the buildx plugin for DOCKER_BUILDKIT=1."""
    for cli in ("/usr/bin/docker", shutil.which("docker")):
        if cli and os.path.exists(cli):
            probe = subprocess.run([cli, "build", "--help"], capture_output=True, text=True,
                                   env={**os.environ, "DOCKER_BUILDKIT": "1"})
            if "--progress" in probe.stdout:
                return cli
    pytest.skip("no docker CLI with BuildKit (docker.io's 20.10 CLI, or buildx) on this host")


def cli_build(cli: str, dockerfile: str, tag: str, args: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [cli, "build", "--progress=plain", "--platform", "linux/amd64", "-f", dockerfile, "-t", tag]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    return subprocess.run(cmd + ["."], cwd=REPO, capture_output=True, text=True, timeout=1800,
                          env={**os.environ, "DOCKER_BUILDKIT": "1"})


def test_both_dockerfiles_build_with_buildkit(docker_client, built_image, wheelhouse_dir):
    cli = docker_cli_with_buildkit()
    rel_wheels = os.path.relpath(wheelhouse_dir, REPO)
    if rel_wheels.startswith(".."):
        pytest.skip("the wheelhouse is outside the repository: a plain docker build cannot see it")
    if Path(built_image.weights_dir).resolve() != (REPO / "weights").resolve():
        pytest.skip("WEIGHTS points outside weights/: a plain docker build only sees weights/")
    tags = ["amosseg-buildkit-builder:test", "amosseg-buildkit:test"]
    try:
        proc = cli_build(cli, "docker/Dockerfile.build", tags[0],
                         {"BASE_IMAGE": built_image.base_image, "WHEELHOUSE": rel_wheels,
                          "TORCH_VERSION": "2.13.0", "TORCH_INDEX_URL": ""})
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert "offline install from the wheelhouse" in proc.stderr
        proc = cli_build(cli, "docker/Dockerfile.runtime", tags[1],
                         {"BASE_IMAGE": built_image.base_image, "BUILDER_IMAGE": tags[0],
                          "TEAMNAME": "buildkit", "VERSION": built_image.version})
        assert proc.returncode == 0, proc.stderr[-4000:]
        out = docker_client.containers.run(
            tags[1], ["python", "-c", "import os, torch; print(sorted(os.listdir('.')), torch.__version__)"],
            network_mode="none", remove=True).decode()
        assert "run_inference.py" in out and "weights" in out and "2.13.0" in out
        assert ".env" not in out and "id_rsa" not in out
        labels = docker_client.images.get(tags[1]).labels
        assert labels["org.amos22.team"] == "buildkit"
    finally:
        for tag in reversed(tags):
            try:
                docker_client.images.remove(tag, force=True)
            except Exception:
                pass
