"""A second, newer real Docker engine for tests: Debian trixie's docker.io (26.x) with the
containerd image store, run as docker-in-docker on the host's engine.

Why: verify-load must tell the truth on the engines users have (20.10 through 29), and only
20.10 is installed here. The rootfs comes from Debian's own packages (debootstrap), so nothing is
a stand-in. The host's Python and the checkout are mounted read-only at the same paths, so the
host tools run inside the container (`exec`) and their throwaway daemon is that engine's dockerd.

    python -m amoskit.devtools.dind        # build the image, start it, print `docker info`, stop
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = "trixie"
# docker-cli: verify-load runs the organisers' line with the CLI; libffi8: the host
# interpreter's ctypes (mounted in, see python_prefix)
PACKAGES = "docker.io,docker-cli,iptables,ca-certificates,pigz,util-linux,procps,libffi8"
IMAGE = f"amoskit-dind:{SUITE}-{hashlib.sha256(PACKAGES.encode()).hexdigest()[:8]}"


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


def ensure_image(client) -> str:
    """The imported trixie rootfs (debootstrap, about 30-60 s, once per engine)."""
    from docker.errors import ImageNotFound
    try:
        client.images.get(IMAGE)
        return IMAGE
    except ImageNotFound:
        pass
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is missing: apt-get install -y debootstrap")
    with tempfile.TemporaryDirectory(prefix="dind-rootfs-", dir="/var/tmp") as tmp:
        root = Path(tmp) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(root)],
             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        (root / "etc/docker").mkdir(parents=True, exist_ok=True)
        (root / "etc/docker/daemon.json").write_text(
            json.dumps({"features": {"containerd-snapshotter": True}}))
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _run(["docker", "import", "-", IMAGE], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        tar.wait()
    return IMAGE


def python_prefix() -> Path:
    """The installation the running interpreter (and its venv) comes from."""
    return Path(os.path.realpath(sys.base_prefix))


class DockerInDocker:
    """Context manager: a running trixie dockerd; `.url` for clients on the host, `.exec(...)`
    for commands inside it. Everything (container, data, socket folder) is removed on exit."""

    def __init__(self, client, mounts: list[Path] = (), start_timeout: float = 90):
        self.client = client
        self.mounts = [Path(m).resolve() for m in mounts]
        self.start_timeout = start_timeout
        self.container = None
        self.work: Path | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.work}/sock/docker.sock"

    def __enter__(self) -> "DockerInDocker":
        ensure_image(self.client)
        self.work = Path(tempfile.mkdtemp(prefix="dind-", dir="/var/tmp"))
        for sub in ("sock", "data", "tmp"):
            (self.work / sub).mkdir()
        volumes = {str(self.work / "sock"): {"bind": "/sock", "mode": "rw"},
                   str(self.work / "data"): {"bind": "/var/lib/docker", "mode": "rw"},
                   # a real filesystem for /tmp: the throwaway dockerd's data root lives there,
                   # and overlayfs cannot sit on the container's own overlay
                   str(self.work / "tmp"): {"bind": "/tmp", "mode": "rw"},
                   "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                   str(python_prefix()): {"bind": str(python_prefix()), "mode": "ro"}}
        for m in self.mounts:
            volumes[str(m)] = {"bind": str(m), "mode": "rw"}
        try:
            self.container = self.client.containers.run(
                IMAGE, ["dockerd", "-H", "unix:///sock/docker.sock"], detach=True,
                cap_add=["ALL"], cap_drop=["SYS_RESOURCE"],
                security_opt=["seccomp=unconfined", "apparmor=unconfined"],
                tmpfs={"/run": ""}, volumes=volumes, cgroupns="host",
                # an init as PID 1 reaps the containerd shims that the throwaway daemon's
                # containers leave to it (dockerd as PID 1 would keep them as zombies)
                init=True,
                name=f"amoskit-dind-{os.getpid()}")
            self._wait()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait(self) -> None:
        import docker
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            self.container.reload()
            if self.container.status == "exited":
                raise RuntimeError("dockerd in the trixie container exited: "
                                   + self.container.logs(tail=5).decode(errors="replace"))
            try:
                docker.DockerClient(base_url=self.url, timeout=5).ping()
                return
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        raise RuntimeError(f"dockerd in the trixie container did not answer within "
                           f"{self.start_timeout:.0f} s")

    def exec(self, cmd: list[str], env: dict | None = None, timeout: float = 3000):
        """Run cmd inside the container (as root), talking to its own engine; CompletedProcess."""
        env_args = [a for k, v in {"DOCKER_HOST": "unix:///sock/docker.sock", **(env or {})}.items()
                    for a in ("-e", f"{k}={v}")]
        return subprocess.run(["docker", "exec", *env_args, self.container.id, *cmd],
                              capture_output=True, text=True, timeout=timeout)

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            try:
                self.container.remove(force=True)   # SIGKILL: its dockerd's children die with it
            except Exception:  # noqa: BLE001 - already gone
                pass
            self.container = None
        if self.work is not None:
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.work)], check=False)
            self.work = None


if __name__ == "__main__":
    import docker
    with DockerInDocker(docker.from_env()) as d:
        info = docker.DockerClient(base_url=d.url).info()
        from amoskit.daemon import store
        print(d.url, store.describe(info))
        print(d.exec(["sh", "-c", "dockerd --version; ls /run"]).stdout)
