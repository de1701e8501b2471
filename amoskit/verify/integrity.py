"""Step 1 of verify-load, offline: is the file the complete, unaltered image `make package` saved?

Checks, in the verdict's order: the file, its sha256 sidecar, the gzip stream and the tar (one
streaming pass, amoskit.tarball.scan), the layout, the config / layer / blob digests, and the
package manifest. Each check adds its rows to the Verdict; `check_integrity` runs them and
returns the resolved Image, or None when the file cannot be trusted.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from amoskit import records
from amoskit.contract import SubmissionFiles
from amoskit.tarball.budget import UnpackBudget
from amoskit.tarball.layout import Image, resolve_image
from amoskit.tarball.scan import Scan, scan_tarball
from amoskit.tarball.stream import TarballError
from amoskit.verify.progress import bytes_progress
from amoskit.verify.report import INTEGRITY, Verdict

DIGEST_CHECKS = ("config digest", "layer digest", "blob digest")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(tarball: Path, team: str, v: Verdict) -> bool:
    """Is there a non-empty regular file to read at all?"""
    if not tarball.exists():
        v.add(INTEGRITY, "file", "fail", f"{tarball} does not exist: run `make package "
                                         f"TEAMNAME={team}`")
        return False
    if not tarball.is_file():
        v.add(INTEGRITY, "file", "fail", f"{tarball} is not a regular file")
        return False
    size = tarball.stat().st_size
    if size == 0:
        v.add(INTEGRITY, "file", "fail", f"{tarball} is empty (0 bytes): re-run make package")
        return False
    v.add(INTEGRITY, "file", "pass", f"{size / 1e6:,.1f} MB")
    return True


def check_sha256(actual: str, files: SubmissionFiles, v: Verdict) -> None:
    """The file's hash against the sidecar `make package` wrote beside it."""
    sidecar = files.sha256
    if not sidecar.exists():
        v.add(INTEGRITY, "sha256", "fail", f"{sidecar.name} not found beside the tarball: "
                                           f"re-run make package")
        return
    want, name = records.read_sha256_line(sidecar.read_text())
    if not want:
        v.add(INTEGRITY, "sha256", "fail", f"{sidecar.name} is not in sha256sum format")
    elif want != actual:
        v.add(INTEGRITY, "sha256", "fail", f"file hashes to {actual[:16]}..., {sidecar.name} "
                                           f"says {want[:16]}...: the file changed or is not the "
                                           f"packaged one")
    elif name in ("", files.tarball.name):
        v.add(INTEGRITY, "sha256", "pass", actual)
    else:
        v.add(INTEGRITY, "sha256", "warn", f"{actual} (but {sidecar.name} names {name})")


def check_stream(files: SubmissionFiles, v: Verdict, budget: UnpackBudget) -> Scan | None:
    """sha256, gzip stream and tar rows from one pass within the unpack caps; None when the
    stream is defective or past a cap."""
    size = files.tarball.stat().st_size
    try:
        with bytes_progress("read + hash") as prog:
            task = prog.add_task("scan", total=size)
            scan = scan_tarball(files.tarball, lambda n: prog.advance(task, n), budget=budget)
    except TarballError as exc:
        check = {"gzip": "gzip stream", "tar": "tar"}.get(exc.check, exc.check)
        v.add(INTEGRITY, check, "fail", exc.reason)
        check_sha256(file_sha256(files.tarball), files, v)
        return None
    check_sha256(scan.file_sha256, files, v)
    v.add(INTEGRITY, "gzip stream", "pass", f"complete, CRC-32 and length ok, no trailing data "
                                            f"({scan.compressed_bytes / 1e6:,.1f} MB)")
    v.add(INTEGRITY, "tar", "pass", f"complete with end-of-archive marker, "
                                    f"{len(scan.members)} entries, "
                                    f"{scan.uncompressed_bytes / 1e6:,.1f} MB")
    return scan


def check_layout(scan: Scan, v: Verdict) -> Image | None:
    try:
        img = resolve_image(scan)
    except TarballError as exc:
        v.add(INTEGRITY, "layout", "fail", exc.reason)
        return None
    v.add(INTEGRITY, "layout", "pass", "Docker 25+ OCI layout (index.json, blobs/sha256)"
          if img.layout == "oci" else "classic docker save (manifest.json, <id>/layer.tar)")
    return img


def check_digests(img: Image, v: Verdict) -> None:
    """Config, layers and blobs against their content addresses; other layout problems warn."""
    by_check: dict[str, list[str]] = {}
    for check, reason in img.problems:
        by_check.setdefault(check, []).append(reason)
    for check in DIGEST_CHECKS:
        if check in by_check:
            v.add(INTEGRITY, check, "fail", "; ".join(by_check.pop(check)[:3]))
        elif check == "layer digest":
            v.add(INTEGRITY, check, "pass", f"all {len(img.layers)} layers hash to the config's "
                                            f"rootfs.diff_ids")
        elif check == "config digest":
            v.add(INTEGRITY, check, "pass", img.config_digest)
    for check, reasons in by_check.items():
        v.add(INTEGRITY, check, "warn", "; ".join(reasons))


def check_package_manifest(img: Image, files: SubmissionFiles, v: Verdict) -> None:
    """Is the image in the file the one `make package` recorded?"""
    path = files.manifest
    if not path.exists():
        v.add(INTEGRITY, "package manifest", "warn", f"{path.name} not found: cannot confirm the "
                                                     f"file is the packaged image")
        return
    try:
        man = records.PackageManifest.read(path)
    except (ValueError, OSError) as exc:
        v.add(INTEGRITY, "package manifest", "fail", f"{path.name} unreadable ({exc})")
        return
    if man.config_digest == img.config_digest and \
            man.layer_diff_ids == [m.diff_id for m in img.layers]:
        v.add(INTEGRITY, "package manifest", "pass", "config digest and layers equal the "
                                                     "manifest written by make package")
    else:
        v.add(INTEGRITY, "package manifest", "fail", f"the tarball's image "
                                                     f"({img.config_digest[:19]}...) is not the "
                                                     f"one {path.name} describes: re-run make "
                                                     f"package")


def check_integrity(files: SubmissionFiles, v: Verdict,
                    budget: UnpackBudget | None = None) -> Image | None:
    """Step 1 after the file check; the Image, or None when the file cannot be trusted."""
    budget = budget or UnpackBudget()
    scan = check_stream(files, v, budget)
    if scan is None:
        return None
    img = check_layout(scan, v)
    if img is None:
        return None
    img.unpacked_bytes = budget.unpacked
    check_digests(img, v)
    check_package_manifest(img, files, v)
    return img
