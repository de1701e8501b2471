"""Connect to the Docker engine, or stop with one line saying how to start it.

Every host tool that talks to Docker goes through `connect()`, so a stopped or unreachable engine
gives the same short message everywhere instead of a traceback from the SDK.
"""
from __future__ import annotations

import os
import sys

import docker
from docker.errors import DockerException

HOW_TO_START = ("start it (sudo systemctl start docker, or sudo dockerd >/tmp/dockerd.log 2>&1 &), "
                "make sure your user may use it (docker group), then check with: docker info")


def engine_address() -> str:
    """Where the SDK will look for the engine (DOCKER_HOST, else the default socket)."""
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def try_connect(timeout: int = 600) -> tuple[docker.DockerClient | None, str]:
    """Return (client, "") when the engine answers a ping, else (None, one-line reason)."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client, ""
    except DockerException as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return None, (f"cannot reach the Docker engine at {engine_address()} ({detail[:160]}); "
                      f"{HOW_TO_START}")


def connect(timeout: int = 600) -> docker.DockerClient:
    """Return a client whose engine answers, or exit 2 with the one-line how-to-start message."""
    client, reason = try_connect(timeout)
    if client is None:
        print(f"error: {reason}", file=sys.stderr)
        raise SystemExit(2)
    return client


if __name__ == "__main__":  # `python -m amoskit.daemon.connect`: exit 0 when the engine answers
    connect()
    print(f"Docker engine at {engine_address()} answers")
