"""The shipped image, built once by the session's `make build`: layout, labels, and what must never
be inside it (compilers, pip caches, wheels, .git, tests, secrets), checked on the real image."""
from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from amoskit.image import report as image_report
from conftest import REPO

pytestmark = [pytest.mark.docker, pytest.mark.pipeline]

# Runs inside an image: what should not be there, listed (paths), for the base and for ours.
CONTENT_PROBE = r"""
import json, os, shutil
skip = {"/proc", "/sys", "/dev"}
found = {"wheels": [], "git": [], "tests": [], "pip_cache": [], "compilers": []}
for top, dirs, files in os.walk("/"):
    if top in skip:
        dirs[:] = []
        continue
    for d in dirs:
        p = os.path.join(top, d)
        if d == ".git":
            found["git"].append(p)
        if d == "tests" and (p.startswith("/workspace") or p.startswith("/opt/venv")):
            found["tests"].append(p)
        if d == "pip" and "/.cache" in p:
            found["pip_cache"].append(p)
    for f in files:
        if f.endswith(".whl"):
            found["wheels"].append(os.path.join(top, f))
found["compilers"] = [c for c in ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc-12", "make")
                      if shutil.which(c)]
print(json.dumps(found))
"""


def run_in(client, image: str, command: list[str], **kw) -> str:
    out = client.containers.run(image, command, network_mode="none", remove=True, **kw)
    return out.decode()


@pytest.fixture(scope="module")
def contents(docker_client, built_image):
    ours = json.loads(run_in(docker_client, built_image.tag, ["python", "-c", CONTENT_PROBE]))
    base = json.loads(run_in(docker_client, built_image.base_image, ["python3", "-c", CONTENT_PROBE]))
    return ours, base


def test_tags_labels_platform(docker_client, built_image):
    image = docker_client.images.get(built_image.tag)
    assert f"{built_image.teamname}:{built_image.version}" in image.tags
    attrs = image.attrs
    assert attrs["Os"] == "linux" and attrs["Architecture"] == "amd64"
    labels = attrs["Config"]["Labels"]
    assert labels["org.opencontainers.image.version"] == built_image.version
    assert labels["org.amos22.team"] == built_image.teamname and labels["org.amos22.task"] == "task1"
    # the commit checked out at build time: a real commit, HEAD or an ancestor of it (others may
    # have committed since the session's build)
    revision = labels["org.opencontainers.image.revision"]
    assert len(revision) == 40
    is_ancestor = subprocess.run(["git", "-C", str(REPO), "merge-base", "--is-ancestor", revision, "HEAD"])
    assert is_ancestor.returncode == 0, f"label revision {revision} is not a commit of this checkout"
    assert labels["org.opencontainers.image.created"].endswith("Z")


def test_workspace_layout_and_no_entrypoint(docker_client, built_image):
    config = docker_client.images.get(built_image.tag).attrs["Config"]
    assert config["WorkingDir"] == "/workspace"
    assert not config.get("Entrypoint")
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["PATH"].startswith("/opt/venv/bin:")
    listing = run_in(docker_client, built_image.tag, ["sh", "-c", "ls -1 /workspace /workspace/weights"])
    assert "run_inference.py" in listing and "amosseg" in listing
    for name in ("dataset.json", "plans.json"):
        assert name in listing
    # the organisers' command form: `python run_inference.py` from WORKDIR, python = the venv's
    out = run_in(docker_client, built_image.tag, ["python", "-c",
                 "import os, sys, shutil; print(sys.executable, sys.prefix, os.getcwd(), shutil.which('python'))"])
    assert out.split() == ["/opt/venv/bin/python", "/opt/venv", "/workspace", "/opt/venv/bin/python"]


def test_dependencies_import_as_any_user(docker_client, built_image):
    code = ("import torch, numpy, SimpleITK, einops, dynamic_network_architectures, amosseg; "
            "print(torch.__version__)")
    for user in ("root", "12345:12345"):
        out = run_in(docker_client, built_image.tag, ["python", "-c", code], user=user)
        assert out.strip().startswith("2.13.0")


def test_no_compiler_pip_cache_wheels_git_or_tests(contents):
    ours, base = contents
    assert ours["compilers"] == []
    assert ours["pip_cache"] == []
    assert sorted(set(ours["wheels"]) - set(base["wheels"])) == []  # the base's own python-wheels aside
    assert ours["git"] == []
    # numpy.testing imports numpy._core.tests (and scipy imports numpy.testing): the one kept
    assert [t for t in ours["tests"] if not t.endswith("/numpy/_core/tests")] == []


class _Chunks:
    """File-like view of the SDK's chunk generator, so tarfile can stream an exported container."""

    def __init__(self, chunks):
        self.chunks, self.buf = iter(chunks), b""

    def read(self, n=-1):
        while n < 0 or len(self.buf) < n:
            try:
                self.buf += next(self.chunks)
            except StopIteration:
                break
        data, self.buf = (self.buf, b"") if n < 0 else (self.buf[:n], self.buf[n:])
        return data


def files_containing(client, image: str, needles: list[bytes], prefixes=("",)) -> dict[bytes, list[str]]:
    """Every file of the image's filesystem (under the prefixes) whose content has a needle."""
    container = client.containers.create(image, ["true"])
    hits = {n: [] for n in needles}
    try:
        with tarfile.open(fileobj=_Chunks(container.export(chunk_size=1 << 20)), mode="r|") as tar:
            for member in tar:
                if not member.isfile() or not any(("/" + member.name).startswith(p) for p in prefixes):
                    continue
                data = tar.extractfile(member).read()
                for n in needles:
                    if n in data:
                        hits[n].append("/" + member.name)
    finally:
        container.remove(force=True)
    return hits


def test_secrets_planted_in_the_repo_never_reach_the_image(docker_client, built_image):
    token = built_image.secret_token.encode()
    assert built_image.planted_secrets, "the build had no planted .env / id_rsa to keep out"
    hits = files_containing(docker_client, built_image.tag, [token])
    assert hits[token] == []
    keys = files_containing(docker_client, built_image.tag, [b"PRIVATE KEY-----"],
                            prefixes=("/workspace", "/opt/venv"))
    assert keys[b"PRIVATE KEY-----"] == []


def test_secret_scan_finds_a_leak_in_a_thin_layer(docker_client, built_image, tmp_path):
    """The scan above can fail: a layer that does carry the token is caught."""
    (tmp_path / "leak.txt").write_text(f"AWS_SECRET_ACCESS_KEY={built_image.secret_token}\n")
    (tmp_path / "Dockerfile").write_text(f"FROM {built_image.base_image}\nCOPY leak.txt /workspace/notes/\n")
    image, _ = docker_client.images.build(path=str(tmp_path), tag="amosseg-leak-check:test", rm=True)
    try:
        token = built_image.secret_token.encode()
        assert files_containing(docker_client, image.id, [token])[token] == ["/workspace/notes/leak.txt"]
    finally:
        docker_client.images.remove(image.id, force=True)


def test_size_within_two_percent_of_its_parts(docker_client, built_image):
    weights = Path(built_image.weights_dir)
    code = REPO / "inference"
    from amoskit.image import build_context
    matcher = build_context.ignore_matcher()
    sizes = {"weights": sum(p.stat().st_size for p, _ in build_context.selected_files(weights, "weights", matcher)),
             "inference": sum(p.stat().st_size for p, _ in build_context.selected_files(code, "inference", matcher))}
    report = image_report.collect(docker_client, built_image.image_id, built_image.base_image, sizes)
    assert report.size_ok, f"image {report.size} B is {report.overhead:+.2%} over its parts {report.expected} B"
    assert report.venv_bytes > 100_000_000  # torch is really in there
    assert report.probe["torch"].startswith("2.13.0") and report.probe["cuda"] is None
    log = built_image.build_log.read_text()
    assert "size check" in log and "OK" in log and "min NVIDIA driver" in log and "layers by size" in log
