"""Start a temporary, empty Docker daemon, and remove every trace of it afterwards.

Why: on the build host the image's layers already exist and its tag already resolves, so a
`docker load` there proves little (a broken layer would be skipped as "already exists"). A
daemon with its own data root, exec root, pidfile and socket starts empty, like the organisers'
server, so loading into it and running the image there is the honest check. It needs root and
`dockerd`; it does without networking (`--bridge=none --iptables=false`), which also matches the
server's "no internet" rule. It runs in its own network namespace (`unshare --net`): dockerd
with `--bridge=none` deletes any `docker0` interface it can see, which would cut the host's
shared daemon off its default bridge.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path


class DaemonUnavailable(Exception):
    """Why no throwaway daemon could be started (one line)."""


def can_start() -> str:
    """'' when a throwaway daemon can be tried here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "not running as root (a second dockerd needs root)"
    if not shutil.which("dockerd"):
        return "dockerd is not installed on this host"
    if not shutil.which("unshare"):
        return "unshare (util-linux) is missing: the daemon needs its own network namespace"
    return ""


def _unmount_under(root: Path) -> None:
    """Unmount whatever the daemon left mounted below root (deepest first)."""
    try:
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return
    prefix = str(root) + "/"
    for mp in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


ROOT_PREFIX = "tdk-"
OWNER_FILE = "owner.pid"  # the process that made the root: while it lives, the root is in use


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies, however it dies
    (SIGKILL included), so no dockerd outlives its verify-load. unshare execs dockerd in place,
    which keeps the setting."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _alive(pid_file: Path) -> bool:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
        return True
    except (OSError, ValueError):
        return False


def remove_stale_roots(parent: Path) -> list[Path]:
    """Roots of throwaway daemons whose run was killed (SIGKILL leaves them): neither the process
    that made the root nor its dockerd is alive. A root in use, or one whose owner file is not
    written yet (being made this instant), is left alone."""
    removed = []
    for root in parent.glob(ROOT_PREFIX + "*"):
        owner = root / OWNER_FILE
        if not owner.exists() or _alive(owner) or _alive(root / "dockerd.pid"):
            continue
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


INHERITED_KEYS = ("runtimes", "default-runtime", "storage-driver", "cgroup-parent", "exec-opts")


def inherited_config(path: str = "/etc/docker/daemon.json") -> dict:
    """The host daemon's runtime settings (the NVIDIA runtime above all), nothing that would
    clash with our own data root, sockets or network flags."""
    try:
        host = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in host.items() if k in INHERITED_KEYS}


HIDE_SYSTEM_CONTAINERD = ('if [ -d /run/containerd ]; then mount -t tmpfs -o size=1m,mode=0711 '
                          'amoskit-hidden /run/containerd || exit 97; fi; exec "$@"')


def daemon_config(store: str) -> dict:
    """daemon.json: the host's runtime settings, and the image store asked for (the feature flag
    exists from Docker 24; older engines ignore it and use the classic store)."""
    return {**inherited_config(),
            "features": {"containerd-snapshotter": store == "containerd"}}


class ThrowawayDaemon:
    """Context manager: `with ThrowawayDaemon() as d: docker.DockerClient(base_url=d.url)`."""

    def __init__(self, parent: str | None = None, start_timeout: float = 60.0,
                 store: str = "classic"):
        self.parent = parent
        self.start_timeout = start_timeout
        self.store = store                  # "classic" or "containerd" (amoskit.daemon.store)
        self.isolation = ("own containerd (the system one hidden), own network and mount "
                          "namespaces")
        self.root: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    @property
    def socket(self) -> Path:
        return self.root / "d.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> "ThrowawayDaemon":
        reason = can_start()
        if reason:
            raise DaemonUnavailable(reason)
        # short path: unix sockets (ours and containerd's under exec-root) are limited to 108 bytes
        parent = self.parent or tempfile.gettempdir()     # TMPDIR moves it to a larger disk
        remove_stale_roots(Path(parent))
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent))
        (self.root / OWNER_FILE).write_text(str(os.getpid()))
        for sub in ("data", "exec"):
            (self.root / sub).mkdir()
        self.log_path = self.root / "dockerd.log"
        config = self.root / "daemon.json"
        config.write_text(json.dumps(daemon_config(self.store)))
        # its own network namespace: with --bridge=none dockerd deletes any interface named
        # docker0 it can see, which would break the host's shared daemon. Its own mount
        # namespace with /run/containerd hidden: dockerd then starts and stops a containerd of
        # its own under exec-root instead of storing images in the system one (shared with the
        # host, layers already there not re-read); its mounts vanish with it.
        cmd = ["unshare", "--net", "--mount", "--propagation", "slave", "--",
               "sh", "-c", HIDE_SYSTEM_CONTAINERD, "sh", "dockerd", "--config-file", str(config),
               "--data-root", str(self.root / "data"),
               "--exec-root", str(self.root / "exec"), "--pidfile", str(self.root / "dockerd.pid"),
               "-H", self.url, "--bridge=none", "--iptables=false", "--ip-masq=false",
               "--userland-proxy=false"]
        try:  # until it answers, nobody else holds it: any way out of here must stop it
            with open(self.log_path, "wb") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, start_new_session=True,
                                             preexec_fn=_die_with_parent)
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_up(self) -> None:
        import docker
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DaemonUnavailable(f"dockerd exited ({self.proc.returncode}): {self.log_tail()}")
            if self.socket.exists():
                try:
                    docker.DockerClient(base_url=self.url, timeout=5).ping()
                    return
                except Exception:  # noqa: BLE001 - not up yet
                    pass
            time.sleep(0.3)
        raise DaemonUnavailable(f"dockerd did not answer within {self.start_timeout:.0f}s: "
                                f"{self.log_tail()}")

    def log_tail(self, n: int = 3) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            return " | ".join(lines[-n:])[-400:]
        except (OSError, AttributeError):
            return ""

    def env(self) -> dict[str, str]:
        """Environment for the docker CLI pointing at this daemon."""
        env = dict(os.environ)
        env["DOCKER_HOST"] = self.url
        env.pop("DOCKER_CONTEXT", None)
        return env

    def stop(self) -> None:
        """Stop the daemon (its containers die with it) and delete its data root."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self.root is not None and self.root.exists():
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
            if self.root.exists():  # files still busy: one more try after a moment
                time.sleep(1)
                _unmount_under(self.root)
                shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "ThrowawayDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # smoke check: start, print info, stop
    with ThrowawayDaemon() as d:
        import docker
        info = docker.DockerClient(base_url=d.url).info()
        print(d.url, info["ServerVersion"], info["DockerRootDir"], info["Images"], "images")
    print("stopped and removed")
