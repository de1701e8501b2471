"""One streaming pass over a `docker save` tarball: file hash, gzip and tar framing, and every
member hashed (layer blobs by what they decompress to, as rootfs.diff_ids requires) and listed.

Nothing is extracted to disk and the file is never read into memory.
"""
from __future__ import annotations

import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amoskit.tarball.budget import UnpackBudget
from amoskit.tarball.layers import Entry, scan_layer_tar
from amoskit.tarball.stream import (CHUNK, GZIP_MAGIC, CountingReader, GzipCheckingReader,
                                    TarballError)

SMALL_MEMBER = 4 << 20          # outer members up to this size are kept in memory (json, configs)


@dataclass
class Member:
    """One entry of the outer (docker save) tar."""
    name: str
    size: int
    kind: str                      # file, symlink, dir
    link: str = ""
    sha256: str = ""               # of the stored bytes
    diff_id: str = ""              # of the uncompressed layer tar (when it is one)
    compression: str = ""          # "", "gzip"
    layer: dict[str, Entry] | None = None
    data: bytes | None = None      # small members (json)


def _scan_member(tar: tarfile.TarFile, m: tarfile.TarInfo, budget: UnpackBudget) -> Member:
    rec = Member(m.name.lstrip("./") if m.name.startswith("./") else m.name, m.size, "file")
    src = CountingReader(tar.extractfile(m))
    head = src.peek(512)
    is_gzip = head[:2] == GZIP_MAGIC
    is_tar = len(head) == 512 and (head[257:262] == b"ustar" or head == b"\0" * 512)
    if is_gzip:
        rec.compression = "gzip"
        inner = CountingReader(GzipCheckingReader(src, f"layer blob {rec.name}"),
                               on_read=budget.add_bytes)
        ihead = inner.peek(512)
        if len(ihead) == 512 and (ihead[257:262] == b"ustar" or ihead == b"\0" * 512):
            rec.layer = scan_layer_tar(inner, rec.name, budget.add_entry)
        inner.drain()
        src.drain()
        rec.diff_id = "sha256:" + inner.hexdigest()
    elif is_tar:
        rec.layer = scan_layer_tar(src, rec.name, budget.add_entry)
        src.drain()
        rec.diff_id = "sha256:" + src.hexdigest()
    elif m.size <= SMALL_MEMBER:
        rec.data = src.read()
    else:
        src.drain()
    rec.sha256 = "sha256:" + src.hexdigest()
    if src.count != m.size:
        raise TarballError("tar", f"{rec.name}: read {src.count} of {m.size} bytes")
    return rec


@dataclass
class Scan:
    """Everything one pass over the tarball learnt."""
    file_sha256: str = ""
    compressed_bytes: int = 0
    uncompressed_bytes: int = 0
    gzip: bool = False
    members: dict[str, Member] = field(default_factory=dict)


def _gzip_root_cause(body: CountingReader) -> None:
    """A damaged tar inside a gzip stream is usually damaged compression: read on to the gzip
    trailer, so a CRC or truncation error (the cause) is reported instead of its symptom."""
    try:
        body.drain()
    except TarballError as exc:
        raise TarballError(exc.check, exc.reason + " (the tar inside is damaged as a result)") \
            from None


def scan_tarball(path: Path, on_progress: Callable[[int], None] | None = None,
                 require_gzip: bool = True, budget: UnpackBudget | None = None) -> Scan:
    """One streaming pass: file hash, gzip checks, tar framing, per-member hashes and listings,
    within the budget's caps (defaults: UnpackBudget)."""
    scan = Scan()
    budget = budget or UnpackBudget()
    with open(path, "rb") as fh:
        raw = CountingReader(fh, on_progress)
        budget.compressed = lambda: raw.count
        head = raw.peek(2)
        if not head:
            raise TarballError("gzip", f"{path} is empty (0 bytes)")
        scan.gzip = head == GZIP_MAGIC
        if not scan.gzip and require_gzip:
            raise TarballError("gzip", f"{path} is not gzip-compressed (starts with "
                                       f"{raw.peek(4).hex()}): package it with `make package`")
        body = CountingReader(GzipCheckingReader(raw, str(path)) if scan.gzip else raw,
                              keep_tail=4 * CHUNK, on_read=budget.add_bytes)
        try:
            tar = tarfile.open(fileobj=body, mode="r|", bufsize=CHUNK)
            for m in tar:
                budget.add_entry()
                name = m.name[2:] if m.name.startswith("./") else m.name
                if m.isreg():
                    scan.members[name] = _scan_member(tar, m, budget)
                elif m.issym() or m.islnk():
                    scan.members[name] = Member(name, 0, "symlink" if m.issym() else "hardlink",
                                                link=m.linkname)
                elif m.isdir():
                    scan.members[name.rstrip("/")] = Member(name.rstrip("/"), 0, "dir")
            end = tar.offset
        except TarballError as exc:
            if exc.check != "tar" or not scan.gzip:
                raise
            _gzip_root_cause(body)
            raise
        except (tarfile.TarError, EOFError) as exc:
            if scan.gzip:
                _gzip_root_cause(body)
            raise TarballError("tar", f"{path}: the tar inside is incomplete or damaged ({exc})") \
                from None
        # what follows the last member must be the end-of-archive marker (two zero blocks)
        body.drain()
        raw.drain()
        if not scan.members:
            raise TarballError("tar", f"{path}: the tar inside is empty")
        after = body.bytes_from(end)
        if after is None:
            raise TarballError("tar", f"{path}: {body.count - end} unexpected bytes after the "
                                      f"last tar member at offset {end}")
        if len(after) < 1024:
            raise TarballError("tar", f"{path}: the tar has no end-of-archive marker: it was cut "
                                      f"short (re-run the packaging)")
        if after.strip(b"\0"):
            raise TarballError("tar", f"{path}: the tar is damaged at offset {end} (not a valid "
                                      f"header, not the end-of-archive marker)")
        scan.file_sha256 = raw.hexdigest()
        scan.compressed_bytes = raw.count
        scan.uncompressed_bytes = body.count
    return scan
