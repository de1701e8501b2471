"""make package and make verify-load on a second real engine: Debian trixie's Docker 26 with the
containerd image store (amoskit.devtools.dind), next to the host's Docker 20.10.

On the containerd store an image's Id is its manifest digest and `docker save` writes an OCI
layout: the package manifest must still record the config digest, and verify-load, run inside
that container so that its throwaway daemon is Docker 26's own dockerd, must pass the file.
Files saved by either engine verify on the other (load steps, on a small image: the runs are
checked once, on 26, with the real one).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tool

pytestmark = [pytest.mark.docker, pytest.mark.packaging, pytest.mark.verify, pytest.mark.slow]

TASK = "task1"
LOAD_ROWS = ("daemon", "docker load", "tag resolves")


def row(data: dict, check: str) -> dict:
    rows = [r for r in data.get("rows", []) if r["check"] == check]
    assert rows, f"no row {check!r} in {[r['check'] for r in data.get('rows', [])]}"
    return rows[0]


def verdict(tarball: Path) -> dict:
    path = tarball.with_name(tarball.name.replace(".tar.gz", ".verify.json"))
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.fixture(scope="module")
def dind(docker_client, tmp_path_factory):
    from amoskit.devtools.dind import DockerInDocker
    with DockerInDocker(docker_client, mounts=[REPO, tmp_path_factory.getbasetemp()]) as d:
        yield d


@pytest.fixture(scope="module")
def on_26(dind, built_image, tmp_path_factory):
    """The session image loaded into Docker 26 (containerd store) and packaged there."""
    env = {**os.environ, "DOCKER_HOST": dind.url, "COLUMNS": "200"}
    save = subprocess.Popen(["docker", "save", built_image.tag], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "load"], stdin=save.stdout, env=env, capture_output=True,
                          text=True, timeout=1200)
    assert save.wait() == 0 and load.returncode == 0, load.stderr
    dist = tmp_path_factory.mktemp("dist26")
    proc = subprocess.run([*tool("amoskit.verbs.package"), "--teamname", built_image.teamname,
                           "--task", TASK, "--dist", str(dist)], env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tb = dist / f"{built_image.teamname}-{TASK}.tar.gz"
    (dist / f"{built_image.teamname}-{TASK}.pdf").write_bytes(b"%PDF-1.4 short paper\n")
    return tb, json.loads(Path(f"{tb}.manifest.json").read_text()), proc.stdout


SMALL_TEAM = "crossteam"


@pytest.fixture(scope="module")
def small_files(docker_client, local_base_image, dind, tmp_path_factory):
    """A small image (the local base plus a script), packaged on 20.10 and on 26: the files that
    cross engines. Their size does not matter to what crosses, so they are kept small."""
    ctx = tmp_path_factory.mktemp("crossctx")
    (ctx / "run_inference.py").write_text("print('device: cpu (test image)')\n")
    (ctx / "Dockerfile").write_text(f"FROM {local_base_image}\nWORKDIR /workspace\n"
                                    f"COPY run_inference.py /workspace/\n")
    docker_client.images.build(path=str(ctx), tag=f"{SMALL_TEAM}:latest", rm=True)
    files = {}
    try:
        for engine, env in (("20", {}), ("26", {"DOCKER_HOST": dind.url})):
            if engine == "26":
                save = subprocess.Popen(["docker", "save", f"{SMALL_TEAM}:latest"],
                                        stdout=subprocess.PIPE)
                load = subprocess.run(["docker", "load"], stdin=save.stdout,
                                      env={**os.environ, **env}, capture_output=True, timeout=600)
                assert save.wait() == 0 and load.returncode == 0, load.stderr
            dist = tmp_path_factory.mktemp(f"cross{engine}")
            proc = subprocess.run([*tool("amoskit.verbs.package"), "--teamname", SMALL_TEAM,
                                   "--dist", str(dist), "--quiet"], env={**os.environ, **env},
                                  capture_output=True, text=True, timeout=900)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            files[engine] = dist / f"{SMALL_TEAM}-{TASK}.tar.gz"
    finally:
        docker_client.images.remove(f"{SMALL_TEAM}:latest", force=True)
    return files


def verify_in_dind(dind, tarball: Path, team: str, samples: Path, labels: Path | None = None):
    cmd = [sys.executable, "-m", "amoskit.verbs.verify_load", str(tarball), "--teamname", team,
           "--samples", str(samples)] + (["--labels", str(labels)] if labels else [])
    proc = dind.exec(cmd, env={"COLUMNS": "200"}, timeout=3000)
    return proc.returncode, verdict(tarball), proc.stdout + proc.stderr


def test_package_on_containerd_store_records_the_config_digest(on_26, built_image):
    tb, manifest, out = on_26
    assert "containerd image store" in manifest["engine"] and "Docker 26" in manifest["engine"]
    assert manifest["saved_layout"] == "oci"
    # the engine's Id is the manifest digest; the recorded config digest is the host's (classic)
    # image id, i.e. the same config measured on two engines
    assert manifest["config_digest"] == built_image.image_id
    assert manifest["image_id"] == manifest["target_digest"] != manifest["config_digest"]


def test_verify_load_passes_on_docker26_containerd(dind, on_26, built_image, sample_cases,
                                                  tmp_path):
    tb, _, _ = on_26
    one = tmp_path / "one"
    (one / "images").mkdir(parents=True)
    (one / "labels").mkdir()
    first = sorted((sample_cases / "images").iterdir())[0]
    shutil.copy(first, one / "images" / first.name)
    shutil.copy(sample_cases / "labels" / first.name, one / "labels" / first.name)
    rc, data, out = verify_in_dind(dind, tb, built_image.teamname, one / "images", one / "labels")
    fails = [r for r in data.get("rows", []) if r["status"] == "fail"]
    assert rc == 0 and not fails, (fails, out[-3000:])
    daemon = row(data, "daemon")["detail"]
    assert "Docker 26" in daemon and "containerd image store" in daemon, daemon
    assert "manifest digest" in row(data, "tag resolves")["detail"]
    assert row(data, "package manifest")["status"] == "pass"
    assert row(data, "organisers' line")["status"] == "pass"
    # nothing of the throwaway daemon is left inside the engine's container
    left = dind.exec(["sh", "-c", "ls -d /tmp/tdk-* 2>/dev/null | wc -l; pgrep -c dockerd; "
                                  "pgrep -c containerd; ls /sys/fs/cgroup/memory 2>/dev/null | "
                                  "grep -c amoskit-verify"]).stdout.split()
    assert left == ["0", "1", "1", "0"], left      # no daemon root; only the engine's own daemons


def test_a_file_saved_by_20_10_loads_on_26_and_one_saved_by_26_on_20_10(dind, small_files,
                                                                       tmp_path):
    empty = tmp_path / "no-samples"
    empty.mkdir()
    rc, data, out = verify_in_dind(dind, small_files["20"], SMALL_TEAM, empty)
    for check in LOAD_ROWS:
        assert row(data, check)["status"] == "pass", (row(data, check), out[-2000:])
    assert "containerd image store" in row(data, "daemon")["detail"]
    assert "layers compared" in row(data, "tag resolves")["detail"]   # containerd's own manifest
    tb26 = small_files["26"]
    assert json.loads(Path(f"{tb26}.manifest.json").read_text())["saved_layout"] == "oci"
    proc = subprocess.run([*tool("amoskit.verbs.verify_load"), str(tb26), "--teamname",
                           SMALL_TEAM, "--samples", str(empty)], capture_output=True,
                          text=True, timeout=3000, env={**os.environ, "COLUMNS": "200"})
    data = verdict(tb26)
    for check in LOAD_ROWS:
        assert row(data, check)["status"] == "pass", (row(data, check), proc.stdout[-2000:])
    assert "Docker 20.10" in row(data, "daemon")["detail"]
    assert "config digest" in row(data, "tag resolves")["detail"]


def test_a_flipped_byte_in_a_layer_of_a_file_saved_by_26_is_caught(small_files, tmp_path):
    """A file Docker 26 (containerd store, OCI layout) saved, one byte flipped in the middle of
    its largest layer blob, recompressed with a matching .sha256: integrity fails, nothing is
    loaded. (tests/test_package_roundtrip.py does the same to a file saved by 20.10.)"""
    import tarfile
    from test_package_roundtrip import pigz
    tb26 = small_files["26"]
    plain = tmp_path / "saved.tar"
    with open(plain, "wb") as out:
        subprocess.run(["pigz", "-d", "-c", str(tb26)], stdout=out, check=True)
    with tarfile.open(plain, "r:") as outer:
        entry = json.load(outer.extractfile("manifest.json"))[0]
        biggest = max((outer.getmember(p) for p in entry["Layers"]), key=lambda m: m.size)
        offset = biggest.offset_data + biggest.size // 2
    with open(plain, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    tb = pigz(plain, tmp_path / tb26.name)
    plain.unlink()
    proc = subprocess.run([*tool("amoskit.verbs.verify_load"), str(tb), "--teamname",
                           SMALL_TEAM, "--offline"], capture_output=True, text=True,
                          timeout=1800)
    data = verdict(tb)
    failed = {r["check"] for r in data.get("rows", []) if r["status"] == "fail"}
    assert proc.returncode == 1 and failed & {"layer digest", "blob digest"}, \
        (failed, proc.stdout[-2000:])
    assert row(data, "sha256")["status"] == "pass" and row(data, "gzip stream")["status"] == "pass"
