"""Byte streams for reading a saved image without extracting it: hash-and-count, and gzip checked
to the last byte.

Why separate: a truncated or corrupted file must be named as such (CRC, truncation, trailing
garbage), and every later reader (the outer tar, each layer blob) hashes what passes through.
"""
from __future__ import annotations

import hashlib
import io
import zlib
from typing import Callable

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"


class TarballError(Exception):
    """A defect of the file itself (compression, tar framing, layout), with a one-line reason."""

    def __init__(self, check: str, reason: str):
        super().__init__(reason)
        self.check = check
        self.reason = reason


class CountingReader(io.RawIOBase):
    """Pass bytes through while hashing and counting them; `peek` looks ahead without consuming."""

    def __init__(self, raw, on_read: Callable[[int], None] | None = None, keep_tail: int = 0):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.count = 0
        self.on_read = on_read
        self._ahead = b""
        self.keep_tail = keep_tail          # remember the last bytes read (end-of-tar check)
        self.tail = bytearray()

    def readable(self) -> bool:
        return True

    def peek(self, n: int) -> bytes:
        while len(self._ahead) < n:
            more = self.raw.read(n - len(self._ahead))
            if not more:
                break
            self._ahead += more
        return self._ahead[:n]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = [self._ahead]
            self._ahead = b""
            while True:
                chunk = self.raw.read(CHUNK)
                if not chunk:
                    break
                parts.append(chunk)
            data = b"".join(parts)
        elif self._ahead:
            data, self._ahead = self._ahead[:n], self._ahead[n:]
        else:
            data = self.raw.read(n)
        if data:
            self.sha.update(data)
            self.count += len(data)
            if self.keep_tail:
                self.tail += data
                if len(self.tail) > 2 * self.keep_tail:
                    del self.tail[: len(self.tail) - self.keep_tail]
            if self.on_read:
                self.on_read(len(data))
        return data

    def bytes_from(self, offset: int) -> bytes | None:
        """The bytes read from `offset` to the end, if still remembered."""
        start = self.count - len(self.tail)
        return bytes(self.tail[offset - start:]) if offset >= start else None

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


class GzipCheckingReader(io.RawIOBase):
    """Decompress a gzip stream (one or more members) and fail loudly on any defect.

    zlib checks each member's CRC-32 and length; this class adds what zlib cannot see from
    inside one member: a stream that stops before its trailer (truncated file) and bytes after
    the last member that are not another member (trailing garbage).
    """

    def __init__(self, raw, what: str = "gzip stream"):
        self.raw = raw
        self.what = what
        self._d = None
        self._pending = b""     # compressed bytes not yet given to zlib
        self._out = b""
        self._done = False
        self.members = 0
        self.out_count = 0

    def readable(self) -> bool:
        return True

    def _start_member(self) -> bool:
        """Begin the next member if the stream has one; False at a clean end."""
        while len(self._pending) < 2:
            more = self.raw.read(CHUNK)
            if not more:
                break
            self._pending += more
        if not self._pending:
            if self.members == 0:
                raise TarballError("gzip", f"{self.what} is empty (0 bytes)")
            return False
        if self._pending[:2] != GZIP_MAGIC:
            if self.members == 0:
                raise TarballError("gzip", f"{self.what} is not gzip-compressed "
                                           f"(starts with {self._pending[:4].hex()})")
            rest = len(self._pending) + sum(len(c) for c in iter(lambda: self.raw.read(CHUNK), b""))
            raise TarballError("gzip", f"{self.what} has {rest} bytes of trailing garbage "
                                       f"after the end of the gzip data")
        self._d = zlib.decompressobj(wbits=31)
        self.members += 1
        return True

    def _fill(self, want: int) -> None:
        while len(self._out) < want and not self._done:
            if self._d is None:
                if not self._start_member():
                    self._done = True
                    break
            if self._d.eof:
                self._pending = self._d.unused_data + self._pending
                self._d = None
                continue
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
            elif self._pending:
                data, self._pending = self._pending, b""
            else:
                data = self.raw.read(CHUNK)
                if not data:
                    raise TarballError("gzip", f"{self.what} ends before its gzip trailer: "
                                               f"the file is truncated (re-run the packaging)")
            try:
                out = self._d.decompress(data, CHUNK)
            except zlib.error as exc:
                msg = str(exc)
                if "incorrect data check" in msg:
                    reason = "gzip CRC-32 mismatch: the compressed data is corrupt"
                elif "incorrect length check" in msg:
                    reason = "gzip length mismatch: the compressed data is corrupt"
                else:
                    reason = f"gzip data is corrupt ({msg})"
                raise TarballError("gzip", f"{self.what}: {reason}") from None
            self._out += out

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while True:
                chunk = self.read(CHUNK)
                if not chunk:
                    return b"".join(parts)
                parts.append(chunk)
        self._fill(n)
        data, self._out = self._out[:n], self._out[n:]
        self.out_count += len(data)
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)
