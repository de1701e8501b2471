"""The whole run: pick folders and device, segment every case, never let one case sink the rest.

Why: a submission runs once, unattended, on someone else's server. Reading and preprocessing the
next case and writing the previous one overlap with the network; each failure is one line naming
the file and the fix; the exit status and a final table tell the truth about the run.
"""
from __future__ import annotations

import errno
import os
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import device as devices
from . import folders as folder_rules
from .fast_engine import FastEngine
from .network import UnsupportedModel
from .nifti_io import CaseError, probe_header
from .resources import available_memory_bytes, peak_rss_bytes, usable_cpus
from .run_metrics import PHASES, CaseRecord, RunRecord
from .settings import Settings, SettingsError

GIB = 1024**3
console = Console(file=sys.stdout, highlight=False, soft_wrap=True)


def log(msg: str) -> None:
    console.print(msg, markup=False)


def make_engine(settings: Settings):
    """The engine ENGINE names: ours (fast) or nnU-Net's own predictor (exact fallback)."""
    if settings.engine == "nnunet":
        from .nnunet_engine import NnunetEngine
        return NnunetEngine(settings.model_dir, settings.folds, settings.checkpoint, settings.tta)
    return FastEngine(settings.model_dir, settings.folds, settings.checkpoint, settings.batch_size)


def _load(path: Path, engine, dev, device_ready: threading.Event, device_failed: list):
    """Read + preprocess one case (runs in the prefetch thread; preprocessing once the device is set up)."""
    case = engine.read(path)
    device_ready.wait()
    if device_failed:
        raise RuntimeError("the device could not be set up") from device_failed[0]
    return case, engine.prepare(case, dev)


def _friendly(exc: BaseException, name: str) -> str:
    if isinstance(exc, (CaseError, UnsupportedModel)):
        return str(exc)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return "no space left on the output device; free space in the output folder and rerun"
    if isinstance(exc, MemoryError):
        return "ran out of host memory; give the container more memory"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def run(script_dir: Path, env=os.environ) -> int:
    """Segment every case; 0: all written, 1: some failed, 2: nothing could start (one error line)."""
    t_start = time.perf_counter()
    try:
        settings = Settings.from_env(env, script_dir)
    except SettingsError as exc:
        log(f"error: {exc}")
        return 2
    try:
        chosen = folder_rules.resolve(settings.input_dir, settings.output_dir)
        log(f"input: {chosen.input}  output: {chosen.output}  ({chosen.reason})")
        stale = folder_rules.prepare_output(chosen)
        for p in stale:
            log(f"removed stale partial file {p.name} from an interrupted run")
    except folder_rules.FolderError as exc:
        log(f"error: {exc}")
        return 2
    cases, skipped = folder_rules.list_entries(chosen.input)
    for p in skipped:
        log(f"warning: skipping {p.name!r}: not a *.nii.gz file")
    if not cases:
        log(f"no *.nii.gz cases in {chosen.input}; nothing to do")
        return 0

    threads = settings.torch_threads or usable_cpus()
    torch.set_num_threads(threads)
    dev = devices.choose(settings.force_cpu)  # no CUDA context yet: made below, while the first case is read
    model_dir = settings.model_dir
    try:
        engine = make_engine(settings)  # the model on the CPU
        batch = engine.set_batches(dev)
    except UnsupportedModel as exc:
        log(devices.describe(dev))
        log(f"error: model {model_dir}: {exc}")
        return 2
    tta = settings.tta

    results: list[CaseRecord] = []
    loader = ThreadPoolExecutor(1, thread_name_prefix="prefetch")
    writer = ThreadPoolExecutor(1, thread_name_prefix="writer")
    pending_writes: list[tuple[CaseRecord, Future]] = []
    device_ready = threading.Event()  # the prefetch thread reads, then waits for this to preprocess
    device_failed: list[BaseException] = []  # set-up error: the waiting case must not use the device
    estimates: dict[str, int] = {}  # host-memory estimate per case (metrics)

    def admit(path: Path):
        size, spacing = probe_header(path)
        if size is not None and len(size) >= 3:
            need = engine.estimate_bytes(size, spacing, dev.type == "cuda")
            estimates[path.name] = need
            avail = available_memory_bytes()
            if need > avail:
                raise CaseError(f"needs about {need / GIB:.1f} GiB of host memory, {avail / GIB:.1f} GiB available "
                                "in this container; give it more memory (docker run --memory)")
        return loader.submit(_load, path, engine, dev, device_ready, device_failed)

    def submit(path):
        try:
            return admit(path)
        except CaseError as exc:
            f = Future()
            f.set_exception(exc)
            return f

    nxt = submit(cases[0])  # read the first case while the device starts and takes the model
    try:
        log(devices.describe(dev))
        cap = devices.cap_gpu_memory(dev, settings.gpu_memory_limit_gb)
        if cap:
            log(cap)
        engine.to_device(dev)
        if dev.type == "cuda":  # autotuned convolutions (nnU-Net's choice too); CUDNN_BENCHMARK=0 turns it off
            torch.backends.cudnn.benchmark = settings.cudnn_benchmark
            torch.cuda.reset_peak_memory_stats(dev)  # before case 1's preprocessing may start on the card
    except BaseException as exc:
        device_failed.append(exc)
        raise
    finally:
        device_ready.set()
    for line in engine.describe(tta, model_dir, threads):
        log(line)
    startup = time.perf_counter() - t_start
    rss_before_cases = peak_rss_bytes()  # the process itself: what each case's estimate comes on top of

    progress = _progress(len(cases))
    with progress:
        task = progress.add_task("segmenting", total=len(cases))
        for i, path in enumerate(cases):
            rec = CaseRecord(path.name)
            results.append(rec)
            t_case = time.perf_counter()
            if dev.type == "cuda" and i:  # case 1's were reset before its preprocessing could start
                torch.cuda.reset_peak_memory_stats(dev)
            try:
                case, prep = nxt.result()
            except BaseException as exc:  # noqa: BLE001 - any failure is this case's alone
                rec.fail(_friendly(exc, path.name))
                log(f"error: {path.name}: {rec.error}")
                nxt = submit(cases[i + 1]) if i + 1 < len(cases) else None
                progress.advance(task)
                continue
            nxt = submit(cases[i + 1]) if i + 1 < len(cases) else None
            for w in case.warnings:
                log(f"warning: {path.name}: {w}")
            rec.seconds.update(prep.seconds)
            shape = case.shape
            rec.shape, rec.spacing = list(shape), [round(float(s), 4) for s in case.spacing]
            rec.target_shape = engine.target_shape(prep)
            try:
                labels, secs, mode = engine.predict(case, prep, dev, tta)
                if secs.pop("float32_retry", None):
                    log(f"note: {path.name}: half-precision logits overflowed; predicted again in float32")
                rec.seconds.update(secs)
                rec.mode = mode
                if mode not in ("gpu", "cpu"):
                    log(f"note: {path.name}: {mode}")
            except BaseException as exc:  # noqa: BLE001
                rec.fail(_friendly(exc, path.name))
                log(f"error: {path.name}: {rec.error}")
                progress.advance(task)
                continue
            finally:
                del prep
                case.array = None
            rec.peak_gpu_bytes = int(torch.cuda.max_memory_allocated(dev)) if dev.type == "cuda" else 0
            out_path = chosen.output / path.name
            fut = writer.submit(_timed_write, engine, labels, case, out_path)
            pending_writes.append((rec, fut))
            rec.seconds["compute_total"] = time.perf_counter() - t_case
            log(f"{path.name}: shape {list(shape)} spacing {rec.spacing} -> {rec.target_shape}, "
                f"read {prep_s(rec, 'read')} preprocess {prep_s(rec, 'preprocess')} network {prep_s(rec, 'network')} "
                f"export {prep_s(rec, 'export')} s, peak GPU {rec.peak_gpu_bytes / GIB:.2f} GiB, "
                f"peak RSS {peak_rss_bytes() / GIB:.2f} GiB")
            progress.advance(task)
        for rec, fut in pending_writes:
            try:
                rec.seconds["write"] = fut.result()
            except BaseException as exc:  # noqa: BLE001
                rec.fail(_friendly(exc, rec.name))
                log(f"error: {rec.name}: writing failed: {rec.error}")
    loader.shutdown()
    writer.shutdown()
    total = time.perf_counter() - t_start
    _summary(results, total)
    metrics = RunRecord(device=devices.describe(dev), tta=tta, batch_size=batch, threads=threads,
                        startup_seconds=startup, total_seconds=total, rss_before_cases_bytes=rss_before_cases,
                        host_estimate_bytes=estimates, peak_rss_bytes=peak_rss_bytes(), cases=results)
    failed = metrics.failed
    if settings.metrics_file:
        if settings.metrics_file.resolve().parent == chosen.output.resolve():
            log("warning: METRICS_FILE points into the output folder; not written there")
        else:
            metrics.write(settings.metrics_file)
    if failed:
        log(f"FAILED {len(failed)} of {len(results)} case(s): " + ", ".join(r.name for r in failed))
        return 1
    log(f"done: {len(results)} case(s) in {total:.1f} s")
    return 0


class _PlainProgress:
    """Progress as plain log lines: a live bar is only drawn on a terminal (docker logs are not)."""

    def __init__(self, total):
        self.total, self.done = total, 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *_a, **_k):
        return 0

    def advance(self, _task):
        self.done += 1
        log(f"progress: {self.done}/{self.total} case(s)")


def _progress(total):
    if not console.is_terminal:
        return _PlainProgress(total)
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False)


def prep_s(rec: CaseRecord, key: str) -> str:
    v = rec.seconds.get(key)
    return "-" if v is None else f"{v:.2f}"


def _timed_write(engine, labels, case, out_path):
    t0 = time.perf_counter()
    engine.write(labels, case, out_path)
    return time.perf_counter() - t0


def _summary(results, total):
    table = Table(title=f"segmentation summary ({total:.1f} s)")
    longest = max((len(r.name) for r in results), default=0)
    table.add_column("case", overflow="fold", min_width=min(longest, 120))  # wraps past 120, never cut
    for col in ("status", "shape", "read", "prep", "net", "export", "write", "peak GPU GiB"):
        table.add_column(col, overflow="fold")
    for r in results:
        s = r.seconds
        table.add_row(r.name, r.status if r.ok else f"FAILED: {(r.error or '')[:60]}",
                      "x".join(map(str, r.shape or [])), *(f"{s[k]:.2f}" if k in s else "-" for k in PHASES),
                      f"{(r.peak_gpu_bytes or 0) / GIB:.2f}")
    # a log (docker logs, a file) has no width: wide enough for the longest name on one line
    if console.is_terminal:
        console.print(table)
        return
    width, console.width = console.width, max(console.width, longest + 100)  # print(width=) cannot widen
    try:
        console.print(table)
    finally:
        console.width = width
