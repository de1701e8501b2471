"""The throwaway Docker daemon verify-load loads into: empty, isolated, gone afterwards, and
harmless to the host's shared daemon (dockerd --bridge=none deletes any docker0 it can see, so
it must run in its own network namespace)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import docker
import pytest

from amoskit.daemon import throwaway as throwaway_daemon

pytestmark = [pytest.mark.docker, pytest.mark.verify]


def bridge_exists() -> bool:
    return Path("/sys/class/net/docker0").exists()


@pytest.mark.skipif(throwaway_daemon.can_start() != "", reason=throwaway_daemon.can_start() or "-")
def test_throwaway_daemon_is_empty_isolated_and_removed(docker_client):
    had_bridge = bridge_exists()
    with throwaway_daemon.ThrowawayDaemon() as d:
        root = d.root
        client = docker.DockerClient(base_url=d.url)
        info = client.info()
        assert info["DockerRootDir"] == str(root / "data")
        assert info["Images"] == 0 and info["Containers"] == 0
        assert client.images.list() == []
        # the CLI reaches it through DOCKER_HOST
        out = subprocess.run(["docker", "info", "--format", "{{.DockerRootDir}}"], env=d.env(),
                             capture_output=True, text=True)
        assert out.stdout.strip() == str(root / "data"), out.stderr
    assert not root.exists()
    assert bridge_exists() == had_bridge, "the throwaway daemon removed the host's docker0"
    docker_client.ping()                          # the shared daemon is untouched


def test_can_start_says_why_not(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    reason = throwaway_daemon.can_start()
    assert reason and ("root" in reason or "dockerd" in reason)
    if os.geteuid() == 0:
        assert "dockerd is not installed" in reason
