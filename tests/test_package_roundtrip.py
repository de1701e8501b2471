"""make package + make verify-load on the real engine, with the one shared test image.

The image is packaged once per session (a docker save + compress of ~1.4 GB takes a while on two
cores) and every broken submission is made from it: tarball edits (truncated, a flipped byte in
the gzip data, a flipped byte inside a layer re-compressed with a matching .sha256, a wrong
.sha256, a Docker 25+ OCI-layout rewrite), a save by image id, and thin layers on top of it
(run_inference.py deleted; a wrapper that loses one case's output). Each is caught with its
reason. Also: SIGINT and a full disk during packaging leave no file under the final name.

PACKAGE_TEST_IMAGE=name runs these against an already built `name:latest` instead of building
the session image (a development shortcut; CI leaves it unset).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tarfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

import browser
from conftest import tool

pytestmark = [pytest.mark.docker, pytest.mark.packaging, pytest.mark.verify]

TASK = "task1"


# --------------------------------------------------------------------------- helpers
def run(cmd: list, timeout: float = 1800, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "COLUMNS": "200"}, **kw)


def package(team: str, dist: Path, *extra) -> subprocess.CompletedProcess:
    return run([*tool("amoskit.verbs.package"), "--teamname", team, "--task", TASK, "--dist", dist,
                *extra])


def verify(tarball: Path, team: str, *extra, timeout: float = 3000) -> tuple[int, dict, str]:
    proc = run([*tool("amoskit.verbs.verify_load"), tarball, "--teamname", team, *extra],
               timeout=timeout)
    verdict = tarball.with_name(tarball.name.replace(".tar.gz", ".verify.json"))
    data = json.loads(verdict.read_text()) if verdict.exists() else {}
    return proc.returncode, data, proc.stdout + proc.stderr


def row(data: dict, check: str) -> dict:
    rows = [r for r in data.get("rows", []) if r["check"] == check]
    assert rows, f"no row {check!r} in {[r['check'] for r in data.get('rows', [])]}"
    return rows[0]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pigz(src_tar: Path, dst: Path) -> Path:
    """Compress like make package does and write a matching .sha256 (a 'valid-looking' file)."""
    with open(src_tar, "rb") as i, open(dst, "wb") as o:
        subprocess.run(["pigz", "--no-name", "-1", "-c"], stdin=i, stdout=o, check=True)
    Path(f"{dst}.sha256").write_text(f"{sha256_file(dst)}  {dst.name}\n")
    return dst


def stream_to(chunks, dst: Path) -> None:
    with open(dst, "wb") as o:
        for c in chunks:
            o.write(c)


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def image_under_test(request):
    name = os.environ.get("PACKAGE_TEST_IMAGE")
    if name:
        client = request.getfixturevalue("docker_client")
        img = client.images.get(f"{name}:latest")
        return SimpleNamespace(teamname=name, tag=f"{name}:latest", image_id=img.id)
    return request.getfixturevalue("built_image")


@pytest.fixture(scope="module")
def packaged(image_under_test, tmp_path_factory, request):
    """The session image packaged once with make package's script."""
    dist = tmp_path_factory.mktemp("dist")
    start = time.monotonic()
    proc = package(image_under_test.teamname, dist)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    tb = dist / f"{image_under_test.teamname}-{TASK}.tar.gz"
    manifest = json.loads(Path(f"{tb}.manifest.json").read_text())
    # pin exactly the packaged image under a tag of our own: thin variants build FROM it even
    # if another session re-tags TEAMNAME:latest meanwhile
    client = request.getfixturevalue("docker_client")
    pin = f"pkgtest-pin:{os.getpid()}"
    client.images.get(manifest["image_id"]).tag("pkgtest-pin", str(os.getpid()))
    yield SimpleNamespace(dist=dist, tarball=tb, team=image_under_test.teamname,
                          image=image_under_test, pin=pin, seconds=time.monotonic() - start,
                          output=proc.stdout + proc.stderr, manifest=manifest)
    client.images.remove(pin)


@pytest.fixture(scope="module")
def saved_tar(packaged, tmp_path_factory):
    """The packaged file decompressed once, as the source of tarball edits."""
    out = tmp_path_factory.mktemp("saved") / "image.tar"
    with open(out, "wb") as o:
        subprocess.run(["pigz", "-d", "-c", str(packaged.tarball)], stdout=o, check=True)
    return out


CROP_MM = (230.0, 230.0, 140.0)     # x, y, z: about one patch of the demo model, so a CPU run
                                    # of the real engine takes seconds, not minutes, per case


@pytest.fixture(scope="module")
def samples_dirs(sample_cases, tmp_path_factory):
    """The session's sample cases (same hostile names), cropped around their organs with
    SimpleITK (geometry kept exact) so the real engine's two runs stay short on a CPU."""
    import numpy as np
    import SimpleITK as sitk
    out = tmp_path_factory.mktemp("cases")
    for sub in ("images", "labels"):
        (out / sub).mkdir()
    for img_path in sorted((sample_cases / "images").iterdir()):
        if not img_path.name.lower().endswith(".nii.gz"):
            continue
        img = sitk.ReadImage(str(img_path))
        lab_path = sample_cases / "labels" / img_path.name
        lab = sitk.ReadImage(str(lab_path)) if lab_path.exists() else None
        size = np.array(img.GetSize())
        want = np.minimum(size, np.ceil(np.array(CROP_MM) / np.array(img.GetSpacing())).astype(int))
        if lab is not None and sitk.GetArrayViewFromImage(lab).any():
            idx = np.argwhere(sitk.GetArrayFromImage(lab) > 0).mean(axis=0)[::-1]   # x, y, z
        else:
            idx = size / 2
        start = np.clip(np.round(idx - want / 2).astype(int), 0, size - want)
        for src, sub in ((img, "images"), (lab, "labels")):
            if src is None:
                continue
            crop = sitk.RegionOfInterest(src, [int(v) for v in want], [int(v) for v in start])
            tmp = out / sub / "crop-tmp.nii.gz"          # SimpleITK picks its writer by suffix
            sitk.WriteImage(crop, str(tmp))
            tmp.rename(out / sub / img_path.name)
    return out / "images", out / "labels"


def thin_variant(client, base: str, tag: str, tmp: Path, dockerfile_tail: str,
                 files: dict[str, str] | None = None) -> str:
    """A thin layer on top of the session image (never a fresh full build)."""
    ctx = tmp / f"ctx-{tag.split(':')[0]}"
    ctx.mkdir()
    for name, text in (files or {}).items():
        (ctx / name).write_text(text)
    (ctx / "Dockerfile").write_text(f"FROM {base}\n{dockerfile_tail}\n")
    client.images.build(path=str(ctx), tag=tag, rm=True, forcerm=True)
    return tag


# --------------------------------------------------------------------------- make package
def test_package_writes_tarball_sidecars_and_manifest(packaged, docker_client):
    tb = packaged.tarball
    assert tb.is_file() and tb.stat().st_size > 10_000_000
    assert not list(packaged.dist.glob(".*partial*")), "temporary files left behind"
    assert subprocess.run(["sha256sum", "-c", f"{tb.name}.sha256"], cwd=packaged.dist,
                          capture_output=True).returncode == 0
    assert subprocess.run(["gunzip", "-t", str(tb)], capture_output=True).returncode == 0
    with open(tb, "rb") as fh:
        head = fh.read(10)
    assert head[4:8] == b"\0\0\0\0", "gzip header carries an mtime"
    m = packaged.manifest
    img = docker_client.images.get(packaged.pin)
    assert m["image_id"] == img.id == m["config_digest"]
    assert m["layer_diff_ids"] == img.attrs["RootFS"]["Layers"]
    assert m["tags"] == [f"{packaged.team}:latest"]
    assert m["sha256"] == sha256_file(tb) and m["compressed_bytes"] == tb.stat().st_size
    assert m["uncompressed_bytes"] > m["compressed_bytes"]
    assert m["version"] and m["git_commit"] and m["image_created"]
    for word in ("uncompressed", "compressed", "ratio", "seconds"):
        assert word in packaged.output
    # only TEAMNAME:latest is inside, even when the image has other tags (TEAMNAME:VERSION)
    with tarfile.open(tb, "r|gz") as t:
        for member in t:
            if member.name == "manifest.json":
                entries = json.load(t.extractfile(member))
                assert [e["RepoTags"] for e in entries] == [[f"{packaged.team}:latest"]]
                break


@pytest.mark.slow
def test_package_is_reproducible(packaged, tmp_path):
    proc = package(packaged.team, tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = tmp_path / packaged.tarball.name
    assert sha256_file(again) == packaged.manifest["sha256"], \
        "packaging the same image twice gave different bytes"


def test_package_refuses_a_missing_image(docker_client, tmp_path):
    proc = package("nosuchimageforpackagetest", tmp_path)
    assert proc.returncode == 1
    assert "nosuchimageforpackagetest:latest not found" in proc.stderr and "make build" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigint_during_package_leaves_no_file(packaged, tmp_path):
    proc = subprocess.Popen([*tool("amoskit.verbs.package"), "--teamname", packaged.team,
                             "--dist", str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = list(tmp_path.glob(".*.partial-*"))
        if parts:  # at once: on an idle machine the whole save took seconds, done before 1 MB showed
            break
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("package never started writing")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "no package written" in err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.iterdir())


def test_full_disk_during_package_leaves_no_file(packaged, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)],
                       capture_output=True, text=True)
    if m.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {m.stderr.strip()}")
    try:
        proc = package(packaged.team, small)
        assert proc.returncode == 1, proc.stderr
        assert "no space left" in proc.stderr and "DIST=" in proc.stderr
        assert len([l for l in proc.stderr.splitlines() if "error" in l]) == 1, proc.stderr
        assert list(small.iterdir()) == [], list(small.iterdir())
    finally:
        subprocess.run(["umount", str(small)], check=False)


# --------------------------------------------------------------------------- round trip
@pytest.mark.slow
def test_round_trip_verify_load_passes(packaged, samples_dirs, tmp_path):
    images, labels = samples_dirs
    rc, data, out = verify(packaged.tarball, packaged.team, "--samples", images, "--labels",
                           labels)
    fails = [r for r in data.get("rows", []) if r["status"] == "fail"]
    assert rc == 0 and not fails, f"{fails}\n{out[-3000:]}"
    for check in ("sha256", "gzip stream", "tar", "layer digest", "package manifest", "tag",
                  "platform", "entrypoint", "run_inference.py", "python", "weights", "secrets",
                  "docker load", "tag resolves", "organisers' line", "server limits",
                  "output folder", "limits run outputs", "previews"):
        assert row(data, check)["status"] == "pass", row(data, check)
    # the image under test ran inside the throwaway daemon (root + dockerd here, as in CI)
    if os.geteuid() == 0 and shutil.which("dockerd"):
        assert "throwaway" in row(data, "daemon")["detail"]
    assert row(data, "device")["detail"].startswith("device:")
    amos = row(data, "AMOS-sized case")          # the samples are small: a real case, estimated
    assert amos["status"] == "info" and "512x512x160" in amos["detail"] and "estimated" in amos["detail"]
    slowest = max(row(data, "time per case")["data"]["seconds"].values())
    assert amos["data"]["seconds"] > slowest
    cases = sorted(p.name for p in images.iterdir() if p.name.lower().endswith(".nii.gz"))
    for case in cases:
        r = row(data, case)
        assert r["step"] == "5 outputs" and r["status"] in ("pass", "warn") and r["data"]["dice"]
    pngs = row(data, "previews")["data"]["files"]
    assert len(pngs) == len(cases)
    for p in pngs:
        blob = Path(p).read_bytes()
        assert blob[:8] == b"\x89PNG\r\n\x1a\n" and len(blob) > 5000
    md = packaged.tarball.with_name(f"{packaged.team}-{TASK}.verify.md").read_text()
    assert "Verdict: **" in md and "| 4 run | organisers' line | pass |" in md
    assert "miccai.amos22@gmail.com" in md and f"{packaged.team}-{TASK}.pdf" in md
    assert row(data, "short paper")["status"] == "warn"      # no PDF beside it in the test
    # the page a person opens, as headless Chromium renders it
    page = packaged.tarball.with_name(f"{packaged.team}-{TASK}.verify.html")
    dom = browser.rendered_dom(page)
    text = browser.text_of(dom)
    assert re.search(r"Verdict: (PASS|WARN) 0 failed", text), text[:400]
    assert "organisers' line" in text and "peak memory" in text and "of 30 GB" in text
    legends = browser.elements(dom, "ul", "legend")
    tables = browser.elements(dom, "table", "organs")
    assert len(legends) == len(tables) == len(cases)
    for case, legend, table in zip(cases, legends, tables):
        organs = list(row(data, case)["data"]["dice"])
        assert organs and all(o in legend for o in organs), (legend, organs)
        assert table.startswith("organ DSC NSD") and all(o in table for o in organs)
        assert row(data, case)["data"]["nsd"].keys() == row(data, case)["data"]["dice"].keys()
    seen = browser.not_blank(browser.screenshot(page, tmp_path / "verify.png"))
    assert seen["non_white"] > 0.05 and seen["coloured"] > 0.001 and seen["grey_levels"] > 64, seen
    assert f"]({packaged.team}-{TASK}.verify/previews/" in md     # the Markdown links the PNGs


# --------------------------------------------------------------------------- broken files
def copy_with_sidecars(packaged, dst_dir: Path) -> Path:
    dst_dir.mkdir()
    tb = dst_dir / packaged.tarball.name
    os.link(packaged.tarball, tb)
    for suffix in (".sha256", ".manifest.json"):
        shutil.copy(f"{packaged.tarball}{suffix}", f"{tb}{suffix}")
    return tb


def test_truncated_tarball_is_caught(packaged, tmp_path):
    tb = tmp_path / packaged.tarball.name
    with open(packaged.tarball, "rb") as i, open(tb, "wb") as o:
        shutil.copyfileobj(i, o, length=1 << 20)
        o.truncate(packaged.tarball.stat().st_size * 2 // 3)
    shutil.copy(f"{packaged.tarball}.sha256", f"{tb}.sha256")
    rc, data, out = verify(tb, packaged.team, "--offline")
    assert rc == 1
    assert row(data, "gzip stream")["status"] == "fail"
    assert "truncated" in row(data, "gzip stream")["detail"]
    assert "truncated" in out.strip().splitlines()[-1]


def test_flipped_byte_in_compressed_file_is_caught_by_gzip_crc(packaged, tmp_path):
    tb = tmp_path / packaged.tarball.name
    shutil.copy(packaged.tarball, tb)
    with open(tb, "r+b") as fh:                      # a byte of the deflate data, mid-file
        fh.seek(tb.stat().st_size // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0x10]))
    Path(f"{tb}.sha256").write_text(f"{sha256_file(tb)}  {tb.name}\n")   # sha256 alone can't tell
    rc, data, _ = verify(tb, packaged.team, "--offline")
    assert rc == 1
    assert row(data, "sha256")["status"] == "pass"
    gz = row(data, "gzip stream")
    assert gz["status"] == "fail" and ("CRC" in gz["detail"] or "corrupt" in gz["detail"]), gz


def test_flipped_byte_inside_a_layer_is_caught_by_the_layer_digest(packaged, saved_tar, tmp_path):
    with tarfile.open(saved_tar, "r:") as outer:
        entry = json.load(outer.extractfile("manifest.json"))[0]
        layers = [outer.getmember(p) for p in entry["Layers"]]
        biggest = max(layers, key=lambda m: m.size)
        with tarfile.open(fileobj=outer.extractfile(biggest), mode="r:") as inner:
            victim = max((m for m in inner.getmembers() if m.isreg()), key=lambda m: m.size)
        offset = biggest.offset_data + victim.offset_data + victim.size // 2
    edited = tmp_path / "edited.tar"
    shutil.copy(saved_tar, edited)
    with open(edited, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    tb = pigz(edited, tmp_path / packaged.tarball.name)
    edited.unlink()
    rc, data, _ = verify(tb, packaged.team, "--offline")
    assert rc == 1
    for ok in ("sha256", "gzip stream", "tar"):
        assert row(data, ok)["status"] == "pass", row(data, ok)
    ld = row(data, "layer digest")
    assert ld["status"] == "fail" and "altered" in ld["detail"] and biggest.name in ld["detail"]


def test_wrong_sha256_file_is_caught(packaged, tmp_path):
    tb = copy_with_sidecars(packaged, tmp_path / "d")
    Path(f"{tb}.sha256").write_text(f"{'0' * 64}  {tb.name}\n")
    rc, data, out = verify(tb, packaged.team, "--offline")
    assert rc == 1
    r = row(data, "sha256")
    assert r["status"] == "fail" and "not the packaged one" in r["detail"]
    assert row(data, "layer digest")["status"] == "pass"      # only the sidecar is wrong
    Path(f"{tb}.sha256").unlink()
    rc, data, _ = verify(tb, packaged.team, "--offline")
    assert rc == 1 and "not found" in row(data, "sha256")["detail"]


def test_image_saved_by_id_is_caught(packaged, docker_client, tmp_path):
    raw = tmp_path / "by-id.tar"
    stream_to(docker_client.api.get_image(packaged.manifest["image_id"]), raw)
    tb = pigz(raw, tmp_path / packaged.tarball.name)
    raw.unlink()
    rc, data, out = verify(tb, packaged.team, "--offline")
    assert rc == 1
    r = row(data, "tag")
    assert r["status"] == "fail" and "saved by id" in r["detail"], r
    assert row(data, "layer digest")["status"] == "pass"


def test_missing_run_inference_py_is_caught(packaged, docker_client, tmp_path):
    team = "testteamnoscript"
    thin_variant(docker_client, packaged.pin, f"{team}:latest", tmp_path,
                 "RUN rm /workspace/run_inference.py")
    try:
        proc = package(team, tmp_path)
        assert proc.returncode == 0, proc.stderr
        rc, data, _ = verify(tmp_path / f"{team}-{TASK}.tar.gz", team, "--offline")
    finally:
        docker_client.images.remove(f"{team}:latest", force=True)
    assert rc == 1
    r = row(data, "run_inference.py")
    assert r["status"] == "fail" and "missing" in r["detail"]
    assert row(data, "weights")["status"] == "pass"


NO_OUTPUT_WRAPPER = '''"""Test variant: runs the real script, then loses the first case's output."""
import os, subprocess, sys
rc = subprocess.call([sys.executable, "run_inference_real.py"])
out = "/workspace/output"
names = sorted(n for n in os.listdir(out) if n.lower().endswith(".nii.gz"))
if names:
    os.remove(os.path.join(out, names[0]))
sys.exit(rc)
'''


@pytest.mark.slow
def test_image_writing_no_output_for_one_case_is_caught(packaged, docker_client, samples_dirs,
                                                       tmp_path):
    team = "testteamnooutput"
    thin_variant(docker_client, packaged.pin, f"{team}:latest", tmp_path,
                 "RUN mv /workspace/run_inference.py /workspace/run_inference_real.py\n"
                 "COPY run_inference.py /workspace/run_inference.py",
                 {"run_inference.py": NO_OUTPUT_WRAPPER})
    images, labels = samples_dirs
    try:
        proc = package(team, tmp_path)
        assert proc.returncode == 0, proc.stderr
        # the shared engine already holds these layers: a quick load, and the run is what matters
        rc, data, out = verify(tmp_path / f"{team}-{TASK}.tar.gz", team, "--samples", images,
                               "--labels", labels, "--daemon", "shared")
    finally:
        docker_client.images.remove(f"{team}:latest", force=True)
    assert rc == 1, out[-2000:]
    assert row(data, "organisers' line")["status"] == "pass"   # exit 0: only validation sees it
    first, *others = sorted(p.name for p in images.iterdir() if p.name.lower().endswith(".nii.gz"))
    r = row(data, first)
    assert r["status"] == "fail" and "no output file" in r["detail"], r
    for name in others:                            # only that case is lost
        assert row(data, name)["status"] in ("pass", "warn"), row(data, name)


# --------------------------------------------------------------------------- OCI layout
def to_oci_layout(classic: Path, dst: Path, compress_below: int = 20_000_000) -> dict:
    """Rewrite a classic `docker save` into Docker 25+'s layout (index.json, oci-layout,
    blobs/sha256, plus the compatible manifest.json). Layers under compress_below are stored
    gzip-compressed (as a containerd image store may export them); the others as plain tar,
    as Docker 25 writes them."""
    def add_bytes(t: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        t.addfile(info, io.BytesIO(data))

    stats = {"gzip_layers": 0, "plain_layers": 0}
    with tarfile.open(classic, "r:") as src, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as t:
        entry = json.load(src.extractfile("manifest.json"))[0]
        config_bytes = src.extractfile(entry["Config"]).read()
        config = json.loads(config_bytes)
        for d in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        cfg_digest = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        add_bytes(t, "blobs/sha256/" + cfg_digest[7:], config_bytes)
        layer_descs = []
        for path, diff_id in zip(entry["Layers"], config["rootfs"]["diff_ids"]):
            member = src.getmember(path)
            if member.size < compress_below:
                blob = gzip.compress(src.extractfile(member).read(), compresslevel=1, mtime=0)
                digest = "sha256:" + hashlib.sha256(blob).hexdigest()
                add_bytes(t, "blobs/sha256/" + digest[7:], blob)
                media = "application/vnd.oci.image.layer.v1.tar+gzip"
                size = len(blob)
                stats["gzip_layers"] += 1
            else:
                digest, size = diff_id, member.size
                info = tarfile.TarInfo("blobs/sha256/" + digest[7:])
                info.size = size
                t.addfile(info, src.extractfile(member))
                media = "application/vnd.oci.image.layer.v1.tar"
                stats["plain_layers"] += 1
            layer_descs.append({"mediaType": media, "digest": digest, "size": size})
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": cfg_digest, "size": len(config_bytes)},
            "layers": layer_descs}).encode()
        man_digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        add_bytes(t, "blobs/sha256/" + man_digest[7:], manifest)
        tag = entry["RepoTags"][0]
        add_bytes(t, "index.json", json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": man_digest, "size": len(manifest),
                           "annotations": {"io.containerd.image.name": f"docker.io/library/{tag}",
                                           "org.opencontainers.image.ref.name": tag.split(":")[1]}}]
        }).encode())
        add_bytes(t, "manifest.json", json.dumps([{
            "Config": "blobs/sha256/" + cfg_digest[7:], "RepoTags": [tag],
            "Layers": ["blobs/sha256/" + d["digest"][7:] for d in layer_descs]}]).encode())
        add_bytes(t, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return stats


def test_docker25_oci_layout_verifies_offline(packaged, saved_tar, tmp_path):
    oci_tar = tmp_path / "oci.tar"
    stats = to_oci_layout(saved_tar, oci_tar)
    assert stats["gzip_layers"] and stats["plain_layers"], stats
    tb = pigz(oci_tar, tmp_path / packaged.tarball.name)
    oci_tar.unlink()
    shutil.copy(f"{packaged.tarball}.manifest.json", f"{tb}.manifest.json")
    (tmp_path / f"{packaged.team}-{TASK}.pdf").write_bytes(b"%PDF-1.4 short paper\n")
    rc, data, out = verify(tb, packaged.team, "--offline")
    fails = [r for r in data["rows"] if r["status"] == "fail"]
    assert rc == 0 and not fails, fails
    assert "OCI" in row(data, "layout")["detail"]
    assert row(data, "short paper")["status"] == "pass"
    assert "miccai.amos22@gmail.com" in data["reminder"]
    for check in ("layer digest", "package manifest", "tag", "run_inference.py", "weights"):
        assert row(data, check)["status"] == "pass", row(data, check)
