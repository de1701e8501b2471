"""SIGTERM to make verify-load at five points of a real run leaves nothing behind: no dockerd or
containerd of its throwaway daemon, no container, no mount, no daemon root, no memory cgroup.

The submission is a small real image (the local base image plus a run_inference.py that sleeps
before copying its inputs), packaged with make package's tool, so every phase lasts long enough
to be hit: daemon start, load, run, validate (the outputs check), report.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import tool
from amoskit.daemon import throwaway

pytestmark = [pytest.mark.docker, pytest.mark.verify, pytest.mark.hostile]

TEAM = "sigtermteam"
SCRIPT = """import glob, os, shutil, time
print("device: cpu (test image)", flush=True)
time.sleep(float(os.environ.get("NAP", "3")))
out = "/workspace/output"
for f in sorted(glob.glob("/workspace/input/*.nii.gz")):
    shutil.copy(f, os.path.join(out, os.path.basename(f)))
"""


@pytest.fixture(scope="module")
def packaged_small(docker_client, local_base_image, tmp_path_factory):
    ctx = tmp_path_factory.mktemp("sigctx")
    (ctx / "run_inference.py").write_text(SCRIPT)
    (ctx / "Dockerfile").write_text(f"FROM {local_base_image}\nWORKDIR /workspace\n"
                                    f"COPY run_inference.py /workspace/\n")
    docker_client.images.build(path=str(ctx), tag=f"{TEAM}:latest", rm=True)
    dist = tmp_path_factory.mktemp("sigdist")
    proc = subprocess.run([*tool("amoskit.verbs.package"), "--teamname", TEAM, "--dist",
                           str(dist), "--quiet"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield dist / f"{TEAM}-task1.tar.gz"
    docker_client.images.remove(f"{TEAM}:latest", force=True)


@pytest.fixture(scope="module")
def one_case(sample_cases, tmp_path_factory):
    """One sample case: each point runs verify-load up to it, so keep the runs short."""
    out = tmp_path_factory.mktemp("onecase")
    first = sorted((sample_cases / "images").iterdir())[0]
    for sub in ("images", "labels"):
        (out / sub).mkdir()
        shutil.copy(sample_cases / sub / first.name, out / sub / first.name)
    return out


def leftovers(parent: Path, pid: int) -> list[str]:
    """What a verify-load (pid) with its daemon roots under parent could have left behind."""
    found = [str(p) for p in parent.glob("tdk-*")]
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(parent) in (proc / "cmdline").read_bytes().decode(
                    errors="replace"):
                found.append(f"process {proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
        except OSError:
            continue
    found += [line for line in Path("/proc/mounts").read_text().splitlines()
              if str(parent) in line]
    found += [str(p) for p in (*Path("/sys/fs/cgroup").glob(f"*/amoskit-verify-{pid}"),
                               Path("/sys/fs/cgroup", f"amoskit-verify-{pid}")) if p.exists()]
    return found


def phase(parent: Path, work: Path) -> str:
    """Where the run is, judged from outside: its daemon root, socket, containers, outputs."""
    roots = list(parent.glob("tdk-*"))
    if not roots:
        return "report" if (work.parent / f"{TEAM}-task1.verify.md").exists() else "before"
    sock = roots[0] / "d.sock"
    if not sock.exists():
        return "daemon start"
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    ps = subprocess.run(["docker", "ps", "-aq"], env=env, capture_output=True, text=True)
    if ps.stdout.strip():
        return "run"
    limits_out = work / "output-limits"
    if (work / "previews").exists() or (limits_out.exists() and any(limits_out.glob("*.nii.gz"))):
        return "validate"
    imgs = subprocess.run(["docker", "images", "-q"], env=env, capture_output=True, text=True)
    return "load" if not imgs.stdout.strip() else "loaded"


@pytest.mark.skipif(throwaway.can_start() != "", reason=throwaway.can_start() or "-")
@pytest.mark.parametrize("point", ["daemon start", "load", "run", "validate", "report"])
def test_sigterm_at_each_point_leaves_nothing_behind(point, packaged_small, one_case, tmp_path):
    parent = Path(tempfile.mkdtemp(prefix="tdks", dir="/tmp"))   # short: unix socket paths
    dist = tmp_path / "dist"
    dist.mkdir()
    for suffix in ("", ".sha256", ".manifest.json"):
        shutil.copy(f"{packaged_small}{suffix}", dist / f"{packaged_small.name}{suffix}")
    tb = dist / packaged_small.name
    work = dist / f"{TEAM}-task1.verify"
    try:
        proc = subprocess.Popen([*tool("amoskit.verbs.verify_load"), str(tb), "--teamname", TEAM,
                                 "--samples", str(one_case / "images"), "--labels",
                                 str(one_case / "labels")],
                                env={**os.environ, "TMPDIR": str(parent), "COLUMNS": "200"},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = []
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            now = phase(parent, work)
            if not seen or seen[-1] != now:
                seen.append(now)
            if now == point:
                proc.send_signal(signal.SIGTERM)
                break
            time.sleep(0.05)
        out = proc.communicate(timeout=300)[0].decode(errors="replace")
        assert point in seen, f"never saw {point!r}: {seen}; {out[-1500:]}"
        # 130: stopped by the signal; 1: the verdict (this image's outputs are its inputs, not
        # label maps); -15: the signal came while Python was already shutting down
        assert proc.returncode in (1, 130) or (point == "report" and proc.returncode == -15), \
            (proc.returncode, out[-1500:])
        left = []
        for _ in range(40):                         # dockerd's own exit takes a moment
            left = leftovers(parent, proc.pid)
            if not left:
                break
            time.sleep(0.5)
        assert not left, left
    finally:
        shutil.rmtree(parent, ignore_errors=True)
