"""The throwaway Docker daemon verify-load loads into: empty, isolated, gone afterwards, and
harmless to the host's shared daemon (dockerd --bridge=none deletes any docker0 it can see, so
it must run in its own network namespace)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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


HOLD = """
import sys, time
from pathlib import Path
from amoskit.daemon import interrupts, throwaway
interrupts.interrupt_on_termination()
with throwaway.ThrowawayDaemon(parent=sys.argv[1]) as d:
    print(d.root, flush=True)
    time.sleep(120)
"""


def dockerd_pids_under(root: Path) -> list[int]:
    """dockerd processes whose command line names this root."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(root) in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def hold_daemon(parent: Path) -> tuple[subprocess.Popen, Path]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(parent)], stdout=subprocess.PIPE,
                            text=True)
    root = Path(proc.stdout.readline().strip())
    assert root.name.startswith("tdk-") and dockerd_pids_under(root), proc.poll()
    return proc, root


@pytest.fixture
def short_parent():
    """A short folder for daemon roots: unix socket paths under it must stay under 108 bytes."""
    parent = Path(tempfile.mkdtemp(prefix="tdkt", dir="/tmp"))
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


def gone_within(root: Path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not dockerd_pids_under(root):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.skipif(throwaway_daemon.can_start() != "", reason=throwaway_daemon.can_start() or "-")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_stopped_run_leaves_no_daemon_and_no_root(short_parent, sig):
    proc, root = hold_daemon(short_parent)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert gone_within(root, 30) and not root.exists()


@pytest.mark.skipif(throwaway_daemon.can_start() != "", reason=throwaway_daemon.can_start() or "-")
def test_a_killed_run_leaves_no_daemon_and_the_next_run_removes_its_root(short_parent):
    proc, root = hold_daemon(short_parent)
    proc.kill()                                    # SIGKILL: no cleanup code runs at all
    proc.wait(timeout=30)
    assert gone_within(root, 30), "dockerd outlived the process that started it"
    assert root.exists()                           # nobody could remove it ...
    assert throwaway_daemon.remove_stale_roots(short_parent) == [root] and not root.exists()


@pytest.mark.skipif(throwaway_daemon.can_start() != "", reason=throwaway_daemon.can_start() or "-")
def test_ctrl_c_while_the_daemon_starts_stops_it(short_parent, monkeypatch):
    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(docker.DockerClient, "ping", interrupted)
    d = throwaway_daemon.ThrowawayDaemon(parent=str(short_parent))
    with pytest.raises(KeyboardInterrupt):
        d.start()
    assert d.root is not None and not d.root.exists() and d.proc.poll() is not None
    assert gone_within(d.root, 5)


def test_only_roots_of_dead_runs_are_stale(tmp_path):
    def root(name, owner=None, daemon=None):
        r = tmp_path / name
        r.mkdir()
        if owner is not None:
            (r / "owner.pid").write_text(str(owner))
        if daemon is not None:
            (r / "dockerd.pid").write_text(str(daemon))
        return r
    live = root("tdk-live", owner=os.getpid())
    being_made = root("tdk-new")                                   # owner file not written yet
    orphaned_daemon = root("tdk-daemon", owner=999999999, daemon=os.getpid())
    dead = root("tdk-dead", owner=999999999, daemon=999999999)
    dead_before_start = root("tdk-early", owner=999999999)
    assert sorted(throwaway_daemon.remove_stale_roots(tmp_path)) == [dead, dead_before_start]
    assert live.exists() and being_made.exists() and orphaned_daemon.exists()


# --------------------------------------------------------------------------- memory bound
def test_memory_bound_writes_v2_limits_and_removes_its_cgroup(tmp_path):
    """On cgroup v2: memory.max and no swap in a child of the root; gone on exit."""
    from amoskit.daemon.memory_bound import MemoryBound
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids\n")
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    with MemoryBound("amoskit-verify-1", 3 << 30, root=tmp_path) as b:
        assert b.parent == "/amoskit-verify-1"
        assert (tmp_path / "amoskit-verify-1" / "memory.max").read_text() == str(3 << 30)
        (tmp_path / "amoskit-verify-1" / "memory.max").unlink()   # cgroupfs has no real files
    assert not (tmp_path / "amoskit-verify-1").exists() and b.parent == ""
    with MemoryBound("x", 1 << 30, cgroup_driver="systemd", root=tmp_path) as b:
        assert b.parent == "" and "systemd" in b.why


def test_a_memory_hog_under_the_organisers_line_fails_its_own_container(docker_client,
                                                                        local_base_image):
    """Their line sets no memory limit; on a host smaller than their server a hog would wake the
    kernel's global OOM killer. Under verify-load's cgroup parent (bookkeeping only) it is killed
    inside its own container (exit 137) and the cgroup is gone afterwards."""
    from amoskit.daemon.memory_bound import MemoryBound
    driver = docker_client.info().get("CgroupDriver")
    if driver != "cgroupfs":
        pytest.skip(f"the engine uses the {driver} cgroup driver")
    name = f"amoskit-test-{os.getpid()}"
    with MemoryBound(name, 256 << 20) as bound:
        assert bound.parent, bound.why
        proc = subprocess.run(["docker", "run", "--rm", "--cgroup-parent", bound.parent,
                               local_base_image, "python3", "-c",
                               "b = b'x' * (1 << 30); print('survived', len(b))"],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 137 and "survived" not in proc.stdout, \
            (proc.returncode, proc.stdout, proc.stderr)
        ok = subprocess.run(["docker", "run", "--rm", "--cgroup-parent", bound.parent,
                             local_base_image, "python3", "-c",
                             "b = b'x' * (64 << 20); print('fits', len(b))"],
                            capture_output=True, text=True, timeout=300)
        assert ok.returncode == 0 and "fits" in ok.stdout, ok.stderr
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{name}")) and \
        not Path("/sys/fs/cgroup", name).exists()
