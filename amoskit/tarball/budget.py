"""Caps on what reading a tarball may unpack: total bytes, compression ratio, entries.

Why: a gzip bomb of a few MB can claim terabytes; `docker load` has no cap and untars to disk.
verify-load reads the whole file once before any load, so these caps stop a hostile file while
nothing has been written, with the numbers and how to raise them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from amoskit.tarball.stream import TarballError

GB = 1 << 30


@dataclass
class UnpackBudget:
    """Counts every unpacked byte (the outer tar and any compressed layer inside it) and every
    entry (outer members and files in layers); raises TarballError('unpack cap') past a cap."""
    max_bytes: int = 64 * GB
    max_ratio: float = 100.0          # unpacked / compressed, judged after ratio_after bytes
    max_entries: int = 2_000_000
    ratio_after: int = 256 << 20
    compressed: Callable[[], int] = field(default=lambda: 0)   # bytes of the file read so far
    unpacked: int = 0
    entries: int = 0

    HOW = ("raise it with `make verify-load VERIFY_ARGS='--max-unpacked-gb N --max-ratio R "
           "--max-entries E'` if the image is really that large")

    def add_bytes(self, n: int) -> None:
        self.unpacked += n
        if self.unpacked > self.max_bytes:
            raise TarballError("unpack cap", f"the file unpacks to more than "
                                             f"{self.max_bytes / GB:.0f} GiB (cap): refused "
                                             f"before loading, as a gzip bomb would fill the "
                                             f"disk; {self.HOW}")
        packed = self.compressed()
        if self.unpacked > self.ratio_after and packed and \
                self.unpacked / packed > self.max_ratio:
            raise TarballError("unpack cap", f"{self.unpacked / GB:.1f} GiB unpacked from "
                                             f"{packed / 1e6:.1f} MB: a compression ratio above "
                                             f"{self.max_ratio:g} (cap) is a gzip bomb, not an "
                                             f"image; {self.HOW}")

    def add_entry(self) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise TarballError("unpack cap", f"more than {self.max_entries:,} entries in the file "
                                             f"and its layers (cap); {self.HOW}")
