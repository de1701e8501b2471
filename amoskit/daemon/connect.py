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


# (what the engine says, the fix), most specific first
API_ERROR_FIXES = (
    ("unknown or invalid runtime name: nvidia", "install the NVIDIA Container Toolkit and "
     "restart Docker (sudo nvidia-ctk runtime configure --runtime=docker)"),
    ("could not select device driver", "install the NVIDIA Container Toolkit and restart Docker"),
    ("no space left on device", "free disk space where Docker keeps its data (docker system df; "
     "docker system prune)"),
    ("bind source path does not exist", "check that the INPUT and OUTPUT folders exist"),
    ("invalid mount config", "check the INPUT and OUTPUT paths (no ':' or ',' in them)"),
    ("permission denied", "run as a user in the docker group, or with sudo"),
    ("is already in use by container", "remove the old container (docker rm -f NAME) or wait "
     "for it to finish"),
    ("pull access denied", "build the image first with make build"),
    ("no such image", "build the image first with make build"),
)


def api_error_line(exc: Exception, doing: str) -> str:
    """One line for a Docker API or connection error: what failed, what the engine said, the fix."""
    said = (getattr(exc, "explanation", None) or str(exc) or type(exc).__name__)
    said = " ".join(str(said).split())[:240]
    fix = next((f for needle, f in API_ERROR_FIXES if needle in said.lower()), "")
    if not fix and "connection" in type(exc).__name__.lower():
        fix = HOW_TO_START
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return (f"Docker could not {doing}: {said}" + (f" (HTTP {status})" if status else "")
            + (f"; {fix}" if fix else ""))


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
