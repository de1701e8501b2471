"""Compress a byte stream to gzip on every core, reproducibly, while hashing what is written.

Why: `docker save | gzip` spends most of its time in single-threaded gzip. pigz compresses
independent 128 KiB blocks in parallel and writes one ordinary gzip member, which `gunzip` and
`docker load` read as usual. With `--no-name` and a fixed block size its output depends only on
the input and the level (not on the thread count, for two threads or more), so packaging the same
image twice gives the same bytes. When pigz is absent, `PythonGzipSink` does the same thing with
zlib in a thread pool (zlib releases the GIL): raw deflate blocks, each primed with the previous
32 KiB as dictionary and ended by a sync flush, concatenated, with one CRC-32 and length trailer.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import os
import shutil
import struct
import subprocess
import threading
import zlib
from typing import BinaryIO

BLOCK = 128 * 1024
CHUNK = 1 << 20


def usable_cpus() -> int:
    """CPUs this process may run on (affinity), at least 2 so the block layout never changes."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    return max(2, n)


class GzipSink:
    """Interface: write() uncompressed bytes, close() to finish; counts and hashes the output."""

    out_bytes: int
    in_bytes: int

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class PigzSink(GzipSink):
    """pigz in a subprocess; a thread copies its output to the file while hashing it."""

    def __init__(self, out: BinaryIO, level: int, threads: int):
        self.out = out
        self._sha = hashlib.sha256()
        self.in_bytes = 0
        self.out_bytes = 0
        self._error: BaseException | None = None
        self.cmd = ["pigz", "--no-name", "-c", f"-{level}", "-p", str(threads), "-b", str(BLOCK // 1024)]
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, bufsize=0)
        self._thread = threading.Thread(target=self._copy_out, daemon=True)
        self._thread.start()

    def _copy_out(self) -> None:
        try:
            while True:
                chunk = self.proc.stdout.read(CHUNK)
                if not chunk:
                    break
                self.out.write(chunk)
                self._sha.update(chunk)
                self.out_bytes += len(chunk)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._error = exc
            self.proc.kill()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def write(self, data: bytes) -> None:
        self._raise_pending()
        try:
            view = memoryview(data)
            while view:
                n = self.proc.stdin.write(view)
                view = view[n:]
        except BrokenPipeError:
            self._thread.join()
            self._raise_pending()
            raise OSError(f"pigz stopped: {self.proc.stderr.read().decode(errors='replace').strip()}")
        self.in_bytes += len(data)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self._thread.join()
        rc = self.proc.wait()
        self._raise_pending()
        if rc != 0:
            raise OSError(f"pigz failed ({rc}): {self.proc.stderr.read().decode(errors='replace').strip()}")

    def abort(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._thread.join(timeout=10)


class PythonGzipSink(GzipSink):
    """pigz's block scheme in pure Python: used only when pigz is not installed."""

    def __init__(self, out: BinaryIO, level: int, threads: int):
        self.out = out
        self.level = level
        self._sha = hashlib.sha256()
        self.in_bytes = 0
        self.out_bytes = 0
        self._crc = 0
        self._buf = bytearray()
        self._prev_tail = b""
        self._pool = cf.ThreadPoolExecutor(max_workers=threads)
        self._pending: list[cf.Future] = []
        self._max_pending = 4 * threads
        self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + (b"\x04" if level == 1 else
                   b"\x02" if level == 9 else b"\x00") + b"\x03")

    def _emit(self, data: bytes) -> None:
        self.out.write(data)
        self._sha.update(data)
        self.out_bytes += len(data)

    @staticmethod
    def _deflate(level: int, block: bytes, zdict: bytes) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY,
                             zdict) if zdict else zlib.compressobj(level, zlib.DEFLATED, -15)
        return c.compress(block) + c.flush(zlib.Z_SYNC_FLUSH)

    def _submit(self, block: bytes) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._pending.append(self._pool.submit(self._deflate, self.level, block, self._prev_tail))
        self._prev_tail = block[-32768:]
        while len(self._pending) >= self._max_pending or (self._pending and self._pending[0].done()):
            self._emit(self._pending.pop(0).result())

    def write(self, data: bytes) -> None:
        self.in_bytes += len(data)
        self._buf += data
        while len(self._buf) >= BLOCK:
            block = bytes(self._buf[:BLOCK])
            del self._buf[:BLOCK]
            self._submit(block)

    def close(self) -> None:
        if self._buf:
            self._submit(bytes(self._buf))
            self._buf.clear()
        for fut in self._pending:
            self._emit(fut.result())
        self._pending.clear()
        self._pool.shutdown()
        self._emit(b"\x03\x00" + struct.pack("<II", self._crc & 0xFFFFFFFF,
                                             self.in_bytes & 0xFFFFFFFF))

    def abort(self) -> None:
        for fut in self._pending:
            fut.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)


def open_sink(out: BinaryIO, level: int, threads: int | None = None,
              engine: str = "auto") -> GzipSink:
    """pigz when installed (engine 'auto' or 'pigz'), else the Python fallback."""
    threads = threads or usable_cpus()
    if engine == "pigz" or (engine == "auto" and shutil.which("pigz")):
        return PigzSink(out, level, threads)
    return PythonGzipSink(out, level, threads)
