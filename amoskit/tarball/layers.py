"""Each layer's files, and the container's filesystem they merge into.

Why: whether run_inference.py, python and the weights exist is a question about the merged
filesystem (overlayfs whiteouts, symlinks in parent folders), answered here from the listings
alone. Small files are scanned for secrets while the layer streams past.
"""
from __future__ import annotations

import io
import posixpath
import tarfile
from dataclasses import dataclass, field
from typing import Callable, Iterable

from amosseg import model_choice
from amoskit.tarball.secret_scan import secrets_in_stream
from amoskit.tarball.stream import CHUNK, TarballError

SCAN_FILE_LIMIT = 2 << 20       # files we read later (KEEP_TEXT) are kept up to this size


@dataclass
class Entry:
    """One path inside a layer."""
    kind: str                   # file, dir, symlink, hardlink, other
    size: int = 0
    link: str = ""
    secrets: list[str] = field(default_factory=list)
    text: bytes | None = None   # kept for small files we read later (dataset.json)


# read later by the weights check (amosseg.model_choice: what runs, as the engine reads it)
KEEP_TEXT = {"dataset.json", "plans.json", "model.json", model_choice.CHOICE_FILE, model_choice.INFO_FILE}
# read by the torch/CUDA check (which NVIDIA driver the image's torch needs)
KEEP_TEXT_SUFFIX = "/torch/version.py"


def norm(path: str) -> str:
    """Layer member name -> absolute path as the container sees it."""
    while path.startswith("./"):
        path = path[2:]
    p = posixpath.normpath("/" + path)
    return "/" if p in ("/", "//") else p


def scan_layer_tar(fileobj, where: str, on_entry: Callable[[], None] = lambda: None
                   ) -> dict[str, Entry]:
    """List a layer tar (streamed) and scan every text file for secrets; on_entry counts entries
    (amoskit.tarball.budget caps them)."""
    entries: dict[str, Entry] = {}
    try:
        with tarfile.open(fileobj=fileobj, mode="r|", bufsize=CHUNK) as tar:
            for m in tar:
                on_entry()
                path = norm(m.name)
                if m.isreg():
                    e = Entry("file", m.size)
                    src = tar.extractfile(m)
                    if m.size <= SCAN_FILE_LIMIT and (posixpath.basename(path) in KEEP_TEXT or
                                                      path.endswith(KEEP_TEXT_SUFFIX)):
                        e.text = src.read()
                        src = io.BytesIO(e.text)
                    e.secrets = secrets_in_stream(path, src.read)
                elif m.isdir():
                    e = Entry("dir")
                elif m.issym():
                    e = Entry("symlink", link=m.linkname)
                elif m.islnk():
                    e = Entry("hardlink", link=norm(m.linkname))
                else:
                    e = Entry("other")
                entries[path] = e
    except TarballError:
        raise
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TarballError("tar", f"layer {where} is not a complete tar ({exc})") from None
    return entries


# --------------------------------------------------------------------------- merged filesystem
def merge_layers(layers: Iterable[dict[str, Entry]]) -> dict[str, Entry]:
    """Apply layers in order with overlayfs whiteouts, giving the container's filesystem.
    Linear in the number of entries: a whiteout removes its subtree through a children index,
    never by scanning every path (quadratic on an image with many whiteouts)."""
    fs: dict[str, Entry] = {}
    kids: dict[str, set[str]] = {}

    def link(path: str) -> None:            # register path under each missing ancestor
        while path != "/":
            parent = posixpath.dirname(path)
            below = kids.setdefault(parent, set())
            if path in below:
                return
            below.add(path)
            path = parent

    def remove(path: str, itself: bool) -> None:
        stack = list(kids.pop(path, ()))
        while stack:
            p = stack.pop()
            fs.pop(p, None)
            stack.extend(kids.pop(p, ()))
        if itself:
            fs.pop(path, None)
            kids.get(posixpath.dirname(path), set()).discard(path)

    for layer in layers:
        # whiteouts hide what the layers below hold, whatever their order inside this layer
        for path in layer:
            parent, base = posixpath.split(path)
            if base == ".wh..wh..opq":
                remove(parent, itself=False)
            elif base.startswith(".wh."):
                remove(posixpath.join(parent, base[4:]), itself=True)
        for path, e in layer.items():
            if posixpath.basename(path).startswith(".wh."):
                continue
            if e.kind != "dir" and path in fs and fs[path].kind == "dir":
                remove(path, itself=False)
            fs[path] = e
            link(path)
    return fs


def resolve_path(fs: dict[str, Entry], path: str, hops: int = 0) -> str | None:
    """Follow symlinks (also in parent folders) inside the merged filesystem."""
    path = posixpath.normpath(path)
    if hops > 40:
        return None
    parts = path.strip("/").split("/")
    cur = ""
    for i, part in enumerate(parts):
        cur = cur + "/" + part
        e = fs.get(cur)
        if e is None:
            if i == len(parts) - 1:
                return None
            continue            # a parent folder that no layer lists explicitly
        if e.kind == "symlink":
            base = posixpath.dirname(cur)
            target = e.link if e.link.startswith("/") else posixpath.join(base, e.link)
            rest = "/".join(parts[i + 1:])
            return resolve_path(fs, posixpath.join(target, rest) if rest else target, hops + 1)
        if e.kind == "hardlink":
            cur = e.link
    return cur


def fs_kind(fs: dict[str, Entry], path: str) -> str | None:
    real = resolve_path(fs, path)
    return fs[real].kind if real and real in fs else None
