"""make package's parts that need no Docker: refusals before Docker is touched, and the parallel
gzip (pigz and the pure-Python fallback) being valid, complete and reproducible."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess

import pytest

from conftest import tool

from amoskit.verify import engine_metrics
from amoskit.tarball import compress as parallel_gzip

pytestmark = pytest.mark.packaging

DEAD = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
# compressible and incompressible stretches, not a multiple of the block size
DATA = (b"layer.tar " * 90_000 + os.urandom(700_001) + bytes(300_000)) * 2


def package_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*tool("amoskit.verbs.package"), *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("team", ["TeamA", "team1", "my-team", ""])
def test_bad_teamname_refused_before_docker(team, tmp_path):
    proc = package_cli("--teamname", team, "--dist", str(tmp_path), env=DEAD)
    assert proc.returncode == 2
    assert f"TEAMNAME='{team}'" in proc.stderr and "lowercase letters only" in proc.stderr
    assert "Docker engine" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_unreachable_engine_says_how_to_start_it(tmp_path):
    proc = package_cli("--teamname", "demoteam", "--dist", str(tmp_path / "d"), env=DEAD)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Docker engine" in lines[0]
    assert "dockerd" in lines[0] or "systemctl start docker" in lines[0]
    assert not (tmp_path / "d").exists()


def compress(engine: str, threads: int, level: int = 2, chunk: int = 300_000) -> bytes:
    out = io.BytesIO()
    sink = parallel_gzip.open_sink(out, level, threads, engine)
    for i in range(0, len(DATA), chunk):
        sink.write(DATA[i:i + chunk])
    sink.close()
    blob = out.getvalue()
    assert sink.out_bytes == len(blob) and sink.in_bytes == len(DATA)
    import hashlib
    assert sink.hexdigest() == hashlib.sha256(blob).hexdigest()
    return blob


@pytest.mark.parametrize("engine,level", [("python", 2), ("pigz", 2), ("isal", 3), ("isal", 0)])
def test_parallel_gzip_is_valid_complete_and_reproducible(engine, level, tmp_path):
    if engine == "pigz" and not shutil.which("pigz"):
        pytest.skip("pigz is not installed")
    a, b = compress(engine, 2, level), compress(engine, 3, level, chunk=1 << 20)
    assert a == b, "output depends on the thread count or write sizes"
    assert a[4:8] == b"\0\0\0\0", "mtime in the gzip header"
    assert gzip.decompress(a) == DATA
    f = tmp_path / "x.gz"
    f.write_bytes(a)
    assert subprocess.run(["gunzip", "-t", str(f)]).returncode == 0
    assert len(a) < len(DATA) * 0.7


def test_auto_engine_is_isal_and_levels_are_checked():
    assert parallel_gzip.pick_engine("auto") == "isal", "make setup installs isal"
    assert compress("auto", 2, None) == compress("isal", 2, 3)
    with pytest.raises(ValueError, match="isal has levels 0..3"):
        parallel_gzip.open_sink(io.BytesIO(), 6, 2, "isal")
    assert parallel_gzip.default_level("isal", 1_400_000_000) == 3       # CPU-torch image
    assert parallel_gzip.default_level("isal", 5_900_000_000) == 2       # CUDA-torch image
    assert parallel_gzip.default_level("pigz", 5_900_000_000) == 2
    proc = package_cli("--teamname", "demoteam", "--level", "6", env=DEAD)
    assert proc.returncode == 2 and "--level 6 does not exist for the isal compressor" in proc.stderr


def test_pigz_failure_is_reported(tmp_path):
    if not shutil.which("pigz"):
        pytest.skip("pigz is not installed")
    out = open(tmp_path / "x.gz", "wb")
    sink = parallel_gzip.open_sink(out, 2, 2, "pigz")
    sink.proc.kill()                                   # the compressor dies mid-stream
    with pytest.raises(OSError):
        for _ in range(200):
            sink.write(DATA[:1 << 20])
        sink.close()
    sink.abort()
    out.close()


def test_case_seconds_reads_the_engines_metrics():
    metrics = {"cases": [{"name": "a b.nii.gz", "status": "ok",
                          "seconds": {"read": 1.0, "compute_total": 5.5, "write": 0.5}},
                         {"name": "c.nii.gz", "status": "failed", "seconds": {}}]}
    assert engine_metrics.case_seconds(metrics) == {"a b.nii.gz": 6.0}


def test_amos_sized_estimate_scales_the_largest_sample_by_voxels():
    # demo-model-like sample: 86 slices of 3.96 mm, 233 x 269 at 1.39 mm, model spacing 6 / 2.5 mm
    small = {"name": "a.nii.gz", "status": "ok", "shape": [40, 100, 100], "spacing": [6.0, 2.5, 2.5],
             "target_shape": [40, 100, 100], "seconds": {"compute_total": 2.0, "write": 0.0}}
    big = {"name": "b.nii.gz", "status": "ok", "shape": [86, 233, 269], "spacing": [3.96, 1.39, 1.39],
           "target_shape": [57, 130, 150], "seconds": {"compute_total": 10.0, "write": 0.5}}
    failed = {"name": "c.nii.gz", "status": "failed", "seconds": {}}
    est = engine_metrics.amos_sized_estimate({"cases": [small, big, failed]})
    assert est["case"] == "b.nii.gz"
    assert est["model_spacing"] == pytest.approx([5.975, 2.491, 2.493], abs=0.01)
    # 160 x 2.5 / 5.975 -> 67 slices; 512 x 0.7 / 2.49 -> 144 in-plane
    assert est["factor"] == pytest.approx(67 * 144 * 144 / (57 * 130 * 150), rel=1e-3)
    assert est["seconds"] == pytest.approx(10.5 * est["factor"])
    assert engine_metrics.amos_sized_estimate({"cases": [failed]}) is None
    assert engine_metrics.amos_sized_estimate({}) is None
