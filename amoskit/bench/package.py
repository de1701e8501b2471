"""Benchmark make package against the organisers' `docker save TEAMNAME:latest | gzip -c > file`.

Why a script and not a timed test: timings depend on the machine and its load. Everything is
measured in one run on the same image: `docker save` alone (the floor: nothing can be faster
than reading the image out of the engine), the organisers' gzip pipeline (the baseline), and
`python -m amoskit.verbs.package` with each compressor and level asked for (default: make package's own
choice, isal at the level for the image's size, and the pigz -2 fallback). Printed: seconds, sizes and the ratios the
packaging issue sets as targets (wall <= 0.3x gzip's, <= 1.5x the floor, size <= 1.12x gzip's).

    .venv/bin/python -m amoskit.bench.package --teamname testteam [--variants isal:auto,pigz:2] [--repeat 1]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from amoskit import contract
from amoskit.records import PackageManifest

TARGET_VS_GZIP = 0.3
TARGET_VS_SAVE = 1.5
TARGET_SIZE = 1.12


def timed_shell(cmd: str) -> float:
    start = time.monotonic()
    subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True)
    return time.monotonic() - start


def timed_package(team: str, dist: Path, engine: str, level: str) -> float:
    start = time.monotonic()
    lv = [] if level == "auto" else ["--level", str(level)]
    subprocess.run([sys.executable, "-m", "amoskit.verbs.package", "--teamname", team, "--dist",
                    str(dist), "--engine", engine, *lv, "--quiet"], check=True)
    return time.monotonic() - start


def first_byte(ref: str) -> tuple[float, float]:
    """(seconds to the first byte, total seconds) of the SDK's save stream, read to nowhere:
    Docker 20.10 exports the whole image to a temp folder before it sends anything."""
    from amoskit.daemon import connect as daemon
    client = daemon.connect()
    start = time.monotonic()
    res = client.api._get(client.api._url("/images/{0}/get", ref), stream=True)
    first = None
    try:
        for _ in res.iter_content(1 << 20, decode_unicode=False):
            if first is None:
                first = time.monotonic() - start
    finally:
        res.close()
    return first or 0.0, time.monotonic() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teamname", required=True)
    ap.add_argument("--variants", default="isal:auto,pigz:2",
                    help="compressor:level pairs for package.py, e.g. isal:2,isal:3,pigz:1; "
                         "auto = package.py's default for the image (isal -3, -2 from 3 GB)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant (median is used)")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="scratch folder (default: a temp folder in dist/)")
    args = ap.parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=150)
    ref = f"{args.teamname}:latest"
    variants = [(e, lv) for e, lv in (x.split(":") for x in args.variants.split(",") if x)]
    parent = args.workdir or Path("dist")
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-package-", dir=parent))
    q = lambda p: "'" + str(p).replace("'", "'\\''") + "'"  # noqa: E731
    try:
        console.print(f"[bold]benchmark[/] {ref} on {os.cpu_count()} CPUs, scratch {work}")
        timed_shell(f"docker save {ref} > /dev/null")          # warm the page cache once
        ttfb, sdk_total = first_byte(ref)
        times: dict[str, list[float]] = {"save": [], "gzip": []}
        sizes: dict[str, int] = {}
        names: dict[str, str] = {}
        for _ in range(args.repeat):
            times["save"].append(timed_shell(f"docker save {ref} > {q(work / 'save.tar')}"))
            sizes["save"] = (work / "save.tar").stat().st_size
            (work / "save.tar").unlink()
            times["gzip"].append(timed_shell(f"docker save {ref} | gzip -c > "
                                             f"{q(work / 'gzip.tar.gz')}"))
            sizes["gzip"] = (work / "gzip.tar.gz").stat().st_size
            (work / "gzip.tar.gz").unlink()
            for engine, level in variants:
                key = f"{engine} -{level}"
                dist = work / f"{engine}{level}"
                times.setdefault(key, []).append(timed_package(args.teamname, dist, engine, level))
                files = contract.SubmissionFiles.in_dist(dist, args.teamname)
                tb = files.tarball
                sizes[key] = tb.stat().st_size
                used = PackageManifest.read(files.manifest).compressor
                names[key] = " ".join(used.split()[:2])       # e.g. "isal -2": what auto chose
                ok = subprocess.run(["gunzip", "-t", str(tb)]).returncode == 0
                if not ok:
                    console.print(f"[red]gunzip -t failed for {key}")
                    return 1
                shutil.rmtree(dist)
        med = {k: statistics.median(v) for k, v in times.items()}
        t = Table(title=f"make package benchmark: {ref} ({sizes['save'] / 1e6:,.0f} MB "
                        f"uncompressed, {os.cpu_count()} CPUs, median of {args.repeat})")
        for col in ("variant", "seconds", "vs gzip", "vs save", "MB", "size vs gzip", "targets"):
            t.add_column(col, justify="left" if col in ("variant", "targets") else "right")
        t.add_row("docker save (floor)", f"{med['save']:.1f}", f"{med['save'] / med['gzip']:.2f}x",
                  "1.00x", f"{sizes['save'] / 1e6:,.0f}", "-", "")
        t.add_row("docker save | gzip -c (organisers)", f"{med['gzip']:.1f}", "1.00x",
                  f"{med['gzip'] / med['save']:.2f}x", f"{sizes['gzip'] / 1e6:,.1f}", "1.000x", "")
        verdicts = {}
        for engine, level in variants:
            key = f"{engine} -{level}"
            vg, vs = med[key] / med["gzip"], med[key] / med["save"]
            sz = sizes[key] / sizes["gzip"]
            ok = vg <= TARGET_VS_GZIP and vs <= TARGET_VS_SAVE and sz <= TARGET_SIZE
            verdicts[key] = ok
            marks = (f"{'ok' if vg <= TARGET_VS_GZIP else 'MISS'} <={TARGET_VS_GZIP}x gzip, "
                     f"{'ok' if vs <= TARGET_VS_SAVE else 'MISS'} <={TARGET_VS_SAVE}x save, "
                     f"{'ok' if sz <= TARGET_SIZE else 'MISS'} <={TARGET_SIZE}x size")
            label = key if names[key] in key else f"{key}: {names[key]}"
            t.add_row(f"make package ({label})", f"{med[key]:.1f}", f"{vg:.2f}x",
                      f"{vs:.2f}x", f"{sizes[key] / 1e6:,.1f}", f"{sz:.3f}x",
                      f"[{'green' if ok else 'red'}]{marks}")
        console.print(t)
        console.print(f"  docker save through the SDK: first byte after {ttfb:.1f} s (the engine "
                      f"exports the image before sending), all {sizes['save'] / 1e6:,.0f} MB "
                      f"after {sdk_total:.1f} s")
        for k, v in times.items():
            console.print(f"  {k}: runs {', '.join(f'{x:.1f}' for x in v)} s")
        good = [k for k, ok in verdicts.items() if ok]
        console.print(f"variants meeting every target: {', '.join(good) or 'none'} "
                      f"(make package: isal -3, -2 for images from 3 GB; pigz -2 without isal)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
