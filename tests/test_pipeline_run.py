"""`make run` on the real image and real sample cases, with the organisers' settings: it works as
root and as any uid, the network is off, the input is never written, the outputs end up with the
host user who ran make (checked as a non-root user), and make's exit status is the container's."""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from amoskit.verbs import run as run_image
from conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.pipeline]

HOST_USER = 4242  # a throwaway non-root uid/gid with no entry in /etc/passwd


def fingerprint(folder: Path) -> dict[str, tuple]:
    """Name -> (size, mtime, sha256) of every entry, to prove a folder was not touched."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
        out[str(p.relative_to(folder))] = (st.st_size, st.st_mtime_ns, st.st_mode, digest)
    return out


def public_dir(prefix: str, owner: int | None = None) -> Path:
    """A folder under /tmp that a non-root user can reach (pytest's tmp folders are 0700 root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    if owner is not None:
        os.chown(d, owner, owner)
    return d


def make_run(built_image, inp: Path, out: Path, env=None, preexec=None) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "run", f"TEAMNAME={built_image.teamname}",
                           f"INPUT={inp}", f"OUTPUT={out}"], cwd=REPO, capture_output=True, text=True,
                          timeout=1800, env={**os.environ, **(env or {})}, preexec_fn=preexec)


@contextlib.contextmanager
def traversable_by_others(path: Path):
    """Let other users reach the host venv's interpreter for the test's duration.

    Here (and in CI) Python lives under /root (mode 0700): a non-root user could not even start
    the tools. Only the search (x) bit is added to the folders on the way, and restored after."""
    changed = []
    try:
        for folder in Path(os.path.realpath(path)).parents:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
                changed.append((folder, stat.S_IMODE(mode)))
        yield
    finally:
        for folder, mode in changed:
            folder.chmod(mode)


def as_host_user():
    """preexec_fn: become the throwaway non-root user, allowed to use the Docker socket."""
    docker_gid = os.stat("/var/run/docker.sock").st_gid
    os.setgroups([docker_gid])
    os.setgid(HOST_USER)
    os.setuid(HOST_USER)


def smallest_case(sample_cases: Path) -> Path:
    return min((sample_cases / "images").iterdir(), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def host_run(built_image, sample_cases):
    """The session's one `make run`, as a throwaway non-root host user when the tests run as root
    (CI): as root, output ownership could not go wrong. One case (the smallest sample: the engine's
    own tests cover many cases; this is about the pipeline), in folders whose names hold spaces.
    Returns (process, input folder, output folder, input fingerprint before, invoking uid)."""
    as_root = os.getuid() == 0 and os.path.exists("/var/run/docker.sock")
    uid = HOST_USER if as_root else os.getuid()
    inp = public_dir("amos in ")
    case = smallest_case(sample_cases)
    shutil.copy(case, inp / case.name)
    (inp / case.name).chmod(0o644)
    home = public_dir("amos home ", owner=uid if as_root else None)
    out = home / "predictions"
    before = fingerprint(inp)
    try:
        if as_root:
            with traversable_by_others(REPO / ".venv" / "bin" / "python"):
                proc = make_run(built_image, inp, out, env={"HOME": str(home), "USER": "throwaway"},
                                preexec=as_host_user)
        else:
            proc = make_run(built_image, inp, out)
        yield proc, inp, out, before, uid
    finally:
        shutil.rmtree(inp, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def test_make_run_segments_every_case(host_run):
    proc, inp, out, _, _ = host_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in inp.iterdir())
    assert "device: cpu" in proc.stdout  # the engine's log streamed through
    assert "notice:" in proc.stdout and "CPU" in proc.stdout  # no NVIDIA runtime here: said so
    assert "container exit status 0" in proc.stdout


@pytest.mark.security
def test_outputs_belong_to_the_user_who_ran_make(host_run):
    proc, _, out, _, uid = host_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    written = sorted(out.iterdir())
    assert written
    for p in [out, *written]:
        st = p.stat()
        assert (st.st_uid, st.st_gid) == (uid, uid if uid == HOST_USER else os.getgid()), \
            f"{p} owned by {st.st_uid}:{st.st_gid}, not by the user who ran make ({uid})"
    if uid == HOST_USER:  # that user can read and delete every output, and the folder itself
        check = subprocess.run(["sh", "-c", f'cat "{out}"/* >/dev/null && rm -r "{out}"'],
                               preexec_fn=as_host_user, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        assert not out.exists()


@pytest.mark.security
def test_input_mount_is_never_written(host_run, docker_client, built_image, tmp_path):
    proc, inp, _, before, _ = host_run
    assert proc.returncode == 0
    assert fingerprint(inp) == before
    # and a write attempt under the same settings is refused by the mount itself
    work = tmp_path / "in"
    work.mkdir()
    (work / "case.nii.gz").write_bytes(b"\x1f\x8b original")
    settings = run_image.container_settings(
        built_image.tag, work, tmp_path / "out", os.cpu_count() or 1, [],
        command=["sh", "-c", "echo x > /workspace/input/case.nii.gz; touch /workspace/input/new; "
                             "rm -f /workspace/input/case.nii.gz"])
    (tmp_path / "out").mkdir()
    container = docker_client.containers.create(**settings)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        log = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status != 0 and "Read-only file system" in log
    assert [p.name for p in work.iterdir()] == ["case.nii.gz"]
    assert (work / "case.nii.gz").read_bytes() == b"\x1f\x8b original"


def test_network_is_off_and_limits_applied(docker_client, built_image, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    probe = ("import os, socket, errno\n"
             "print('interfaces', sorted(os.listdir('/sys/class/net')))\n"
             "for host in ('172.17.0.1', '1.1.1.1', 'pypi.org'):\n"
             "    try:\n"
             "        socket.create_connection((host, 443), timeout=5)\n"
             "        print('CONNECTED', host)\n"
             "    except OSError as exc:\n"
             "        print('refused', host, type(exc).__name__, exc.errno)\n")
    info = docker_client.info()
    settings = run_image.container_settings(built_image.tag, tmp_path / "in", tmp_path / "out",
                                            int(info["NCPU"]), info["Runtimes"].keys(),
                                            command=["python", "-c", probe])
    container = docker_client.containers.create(**settings)
    try:
        host = container.attrs["HostConfig"]
        assert host["NetworkMode"] == "none" and host["IpcMode"] == "host"
        assert host["NanoCpus"] == min(4, int(info["NCPU"])) * 10**9
        assert host["Memory"] == 30 * 1024**3
        assert sorted(host["Binds"]) == sorted([f"{tmp_path / 'in'}:/workspace/input:ro",
                                                f"{tmp_path / 'out'}:/workspace/output:rw"])
        assert container.attrs["Config"]["User"] == "root"
        container.start()
        assert container.wait()["StatusCode"] == 0
        log = container.logs().decode()
    finally:
        container.remove(force=True)
    assert "interfaces ['lo']" in log
    assert "CONNECTED" not in log
    assert log.count("refused") == 3


def test_runs_as_an_arbitrary_uid(docker_client, built_image, sample_cases, tmp_path):
    """Not the organisers' way (they use root), but a cluster may force a uid: it still works.
    One case, TTA off: the point is file access as a stranger uid, not the segmentation."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    out.chmod(0o777)
    case = smallest_case(sample_cases)
    shutil.copy(case, inp / case.name)
    settings = run_image.container_settings(built_image.tag, inp, out, os.cpu_count() or 1, [])
    settings["user"] = "23456:23456"
    settings["environment"]["TTA"] = "0"
    container = docker_client.containers.create(**settings)
    try:
        container.start()
        status = container.wait()["StatusCode"]
        log = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 0, log[-3000:]
    written = sorted(out.iterdir())
    assert [p.name for p in written] == [case.name]
    assert all(p.stat().st_uid == 23456 for p in written)


def test_exit_status_is_the_containers(built_image, tmp_path):
    """A case the engine cannot read makes it exit non-zero; run_image.py exits with that status
    (make itself then reports the failure with its own status 2)."""
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "broken.nii.gz").write_bytes(b"")
    proc = subprocess.run([str(REPO / ".venv/bin/python"), "-m", "amoskit.verbs.run",
                           "--image", built_image.tag, "--input", str(inp), "--output", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=1800)
    status = [ln for ln in proc.stdout.splitlines() if "container exit status" in ln]
    assert status, proc.stdout[-3000:] + proc.stderr[-2000:]
    container_status = int(status[0].split("container exit status")[1].split()[0])
    assert container_status != 0
    assert proc.returncode == container_status
    assert not (tmp_path / "out" / "broken.nii.gz").exists()
    assert make_run(built_image, inp, tmp_path / "out2").returncode != 0
