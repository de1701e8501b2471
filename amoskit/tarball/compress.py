"""Compress a byte stream to gzip on every core, reproducibly, while hashing what is written.

Why: `docker save | gzip` spends most of its time in single-threaded gzip. The block scheme pigz
made common compresses independent 128 KiB blocks in parallel (each primed with the previous
32 KiB as dictionary and ended by a sync flush) and writes one ordinary gzip member, which `gunzip`
and `docker load` read as usual. The output depends only on the input, the codec and the level,
never on the thread count or write sizes, so packaging the same image twice gives the same bytes.

Codecs, fastest first (engine "auto" takes the first available):
- isal: Intel's ISA-L deflate (the `isal` wheel, a host-tool dependency) through its threaded
  gzip writer. Its level 3 needs ~1/6 of gzip -6's CPU time at ~1.11x its size on the test image
  (7 CPU seconds for 1.36 GB against 43).
- pigz: the same scheme in C, when the `pigz` binary is installed.
- python: zlib in a thread pool, when neither is there.
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
    """pigz's block scheme with zlib in a thread pool (zlib releases the GIL)."""

    def __init__(self, out: BinaryIO, level: int, threads: int):
        self.out = out
        self.cmd = ["zlib", f"-{level}", f"{BLOCK // 1024} KiB blocks", f"{threads} threads"]
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
        self._emit(b"\x1f\x8b\x08\x00\x00\x00\x00\x00" + (b"\x04" if level <= 1 else
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


def isal_available() -> bool:
    """Whether ISA-L's wheel (`isal`) is installed."""
    try:
        import isal.igzip_threaded  # noqa: F401
    except ImportError:
        return False
    return True


class _HashingFile:
    """What the ISA-L writer writes into: the output file, hashed and counted on the way."""

    def __init__(self, out: BinaryIO, sink: "IsalGzipSink"):
        self.out, self.sink = out, sink

    def write(self, data) -> int:
        n = self.out.write(data)
        self.sink._sha.update(data)
        self.sink.out_bytes += len(data)
        return n

    def flush(self) -> None:
        self.out.flush()


class IsalGzipSink(GzipSink):
    """The same blocks deflated by ISA-L's threaded gzip writer (levels 0-3; 3 compresses best).

    isal's writer splits only what it is given, so every write here is exactly BLOCK bytes
    (the last one excepted): that keeps the output independent of the caller's write sizes.
    Its worker threads reuse their ISA-L state between blocks, ~15 % less CPU than a fresh
    compressobj per block at level 3."""

    def __init__(self, out: BinaryIO, level: int, threads: int):
        from isal import igzip_threaded
        self._sha = hashlib.sha256()
        self.in_bytes = 0
        self.out_bytes = 0
        self._buf = bytearray()
        self.cmd = ["isal", f"-{level}", f"{BLOCK // 1024} KiB blocks", f"{threads} threads"]
        self._gz = igzip_threaded.open(_HashingFile(out, self), "wb", compresslevel=level,
                                       threads=threads, block_size=BLOCK)

    def write(self, data: bytes) -> None:
        self.in_bytes += len(data)
        buf = self._buf
        buf += data
        if len(buf) < BLOCK:
            return
        view = memoryview(buf)
        whole = len(buf) - len(buf) % BLOCK
        try:
            for i in range(0, whole, BLOCK):
                self._gz.write(view[i:i + BLOCK])
        finally:
            view.release()
        del buf[:whole]

    def close(self) -> None:
        if self._buf:
            self._gz.write(bytes(self._buf))
            self._buf.clear()
        self._gz.close()

    def abort(self) -> None:
        try:
            self._gz.close()          # stops its threads; the partial file is removed anyway
        except Exception:  # noqa: BLE001 - the error that caused the abort was already raised
            pass


ENGINES = ("isal", "pigz", "python")
# measured with amoskit/bench/package.py against `docker save | gzip -c` (gzip -6):
# - CPU-torch test image (1.36 GB): isal -3 1.114x gzip's size, isal -2 1.136x (past the 1.12x
#   target); pigz/zlib -2 1.10x (-1 1.135x)
# - CUDA-torch image (5.9 GB, mostly cuBLAS/cuDNN binaries that compress less): isal -3 1.039x
#   but 1.81x docker save's time, isal -2 1.046x at 1.39x, isal -1 1.059x at 1.13x
DEFAULT_LEVEL = {"isal": 3, "pigz": 2, "python": 2}
BIG_IMAGE_BYTES = 3_000_000_000
BIG_IMAGE_LEVEL = {"isal": 2}
LEVELS = {"isal": range(0, 4), "pigz": range(1, 10), "python": range(1, 10)}


def default_level(engine: str, image_bytes: int = 0) -> int:
    """The level for an image of this size: ISA-L drops to -2 from 3 GB (CUDA images), where -3
    costs 30 % more time for 0.7 % of size. It depends only on the image, so packaging the same
    image twice still gives the same bytes."""
    if image_bytes >= BIG_IMAGE_BYTES and engine in BIG_IMAGE_LEVEL:
        return BIG_IMAGE_LEVEL[engine]
    return DEFAULT_LEVEL[engine]


def pick_engine(engine: str = "auto") -> str:
    """The codec 'auto' stands for here: isal, else pigz, else python."""
    if engine != "auto":
        return engine
    if isal_available():
        return "isal"
    return "pigz" if shutil.which("pigz") else "python"


def open_sink(out: BinaryIO, level: int | None = None, threads: int | None = None,
              engine: str = "auto") -> GzipSink:
    """A sink for the chosen engine ('auto' = fastest available); level None = its default."""
    engine = pick_engine(engine)
    level = default_level(engine) if level is None else level
    if level not in LEVELS[engine]:
        r = LEVELS[engine]
        raise ValueError(f"{engine} has levels {r.start}..{r.stop - 1}, not {level}")
    threads = threads or usable_cpus()
    if engine == "isal":
        return IsalGzipSink(out, level, threads)
    if engine == "pigz":
        return PigzSink(out, level, threads)
    return PythonGzipSink(out, level, threads)
