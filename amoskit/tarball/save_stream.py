"""What a `docker save` stream says about its image, read while the stream is being packaged.

Why: under the containerd image store an image's `Id` is its manifest or index digest, and no
API returns the config digest; only the saved file does. So `make package` records what it
measured in the stream it wrote (the config's digest and the tag's target digest) instead of what
the engine calls the image. Every byte read here goes on to the compressor in order: the file
written is exactly the stream that was read.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterator

from amoskit.tarball.layout import tag_target

SMALL = 4 << 20          # members up to this size are hashed and kept (manifests, configs)


class TeeReader(io.RawIOBase):
    """A file-like view of an iterator of chunks that hands each chunk to `sink` as it is first
    needed, whole and in order (no per-read copies: the tar reader reads in 10 KiB steps)."""

    def __init__(self, chunks: Iterator[bytes], sink: Callable[[bytes], None]):
        self.chunks = chunks
        self.sink = sink
        self.buf = memoryview(b"")
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self.pos >= len(self.buf):
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return 0
            self.sink(chunk)
            self.buf, self.pos = memoryview(chunk), 0
        n = min(len(b), len(self.buf) - self.pos)
        b[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n

    def drain(self) -> None:
        """Pass on whatever the tar reader did not need (end-of-archive padding)."""
        self.pos = len(self.buf)
        for chunk in self.chunks:
            self.sink(chunk)


@dataclass
class SavedImage:
    """Measured in the saved stream: the config's digest, the layers, and what the tag points at."""
    layout: str = ""                   # "classic" or "oci"
    config_digest: str = ""            # sha256 of the config blob manifest.json names
    layer_diff_ids: list[str] = field(default_factory=list)
    target_digest: str = ""            # index.json's descriptor for the tag (OCI layout only)
    problems: list[str] = field(default_factory=list)


def read_save_stream(chunks: Iterator[bytes], sink: Callable[[bytes], None],
                     ref: str) -> SavedImage:
    """Walk the tar stream (members hashed when small), feeding every byte to sink."""
    tee = TeeReader(chunks, sink)
    small: dict[str, tuple[str, bytes]] = {}   # name -> (sha256, data)
    problem = ""
    try:
        with tarfile.open(fileobj=tee, mode="r|") as tar:
            for m in tar:
                if not m.isfile() or m.size > SMALL:
                    continue                   # the tar reader skips the body, still teed
                data = tar.extractfile(m).read()
                small[m.name.removeprefix("./")] = ("sha256:" + hashlib.sha256(data).hexdigest(),
                                                    data)
    except (tarfile.TarError, EOFError) as exc:
        problem = f"the saved stream is not a tar this tool can read ({exc})"
    tee.drain()                                # every byte still reaches the file
    saved = describe(small, ref)
    if problem:
        saved.problems.insert(0, problem)
    return saved


def describe(small: dict[str, tuple[str, bytes]], ref: str) -> SavedImage:
    """The SavedImage from the stream's small members."""
    out = SavedImage(layout="oci" if "index.json" in small else "classic")
    if "index.json" in small:
        try:
            out.target_digest = tag_target(json.loads(small["index.json"][1]), ref)
        except ValueError:
            out.problems.append("index.json is not JSON")
    try:
        entry = json.loads(small["manifest.json"][1])[0]
        config_path = posixpath.normpath(entry["Config"])
    except (KeyError, ValueError, IndexError, TypeError):
        out.problems.append("manifest.json missing or unreadable: the config digest was not "
                            "measured")
        return out
    if config_path not in small:
        out.problems.append(f"config {config_path} missing from the stream")
        return out
    digest, data = small[config_path]
    out.config_digest = digest
    named = "sha256:" + posixpath.basename(config_path).removesuffix(".json")
    if digest != named:
        out.problems.append(f"config {config_path} hashes to {digest}, not its name")
    try:
        out.layer_diff_ids = list(json.loads(data)["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError):
        out.problems.append(f"config {config_path} has no rootfs.diff_ids")
    return out
