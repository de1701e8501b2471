"""make package: save TEAMNAME:latest into dist/TEAMNAME-task1.tar.gz, the file that is emailed.

Why this instead of `docker save TEAMNAME | gzip -c`: that line exports every TEAMNAME:* tag,
compresses on one core, stamps the time into the gzip header (so two runs differ) and leaves a
half-written file when interrupted. Here the image is saved through the SDK by its
`TEAMNAME:latest` reference (so that tag, and only it, is inside the file; a save by id has no
tag and the organisers' `docker run ... TEAMNAME` would fail), streamed through a parallel gzip
(ISA-L, else pigz; see amoskit/tarball/compress.py) into a temporary name in the dist folder and renamed
only when complete, then described by
a `.sha256` file (sha256sum format) and a JSON manifest that `make verify-load` checks against.
"""
from __future__ import annotations

import argparse
import datetime as dt
import errno
import os
import subprocess
import sys
import time
from pathlib import Path


from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                           TimeRemainingColumn, TransferSpeedColumn)
from rich.table import Table

from amoskit import contract
from amoskit.daemon import interrupts, store
from amoskit.records import PackageManifest, sha256_line
from amoskit.tarball import compress
from amoskit.tarball.save_stream import SavedImage, read_save_stream

from amoskit import REPO
EMAIL_COMFORT_GB = 4.0
console = Console(stderr=True)


class PackageError(Exception):
    """A one-line, actionable reason the package could not be written."""


def fail(msg: str, code: int = 1) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(code)


def check_teamname(team: str) -> None:
    problem = contract.teamname_problem(team, "package")
    if problem:
        fail(problem, 2)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def read_version() -> str:
    try:
        return (REPO / "VERSION").read_text().strip()
    except OSError:
        return "unknown"


def remove_stale_partials(final: Path) -> None:
    """Partials of killed runs (SIGKILL leaves them) whose process is gone."""
    for p in final.parent.glob(f".{final.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            p.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_compressed(client, ref: str, tmp: Path, level: int | None, threads: int | None,
                    engine: str, total_hint: int, quiet: bool) -> dict:
    """Stream `docker save ref` through the compressor into tmp; return counts, hash and what
    the stream says about its image (SavedImage)."""
    columns = (TextColumn("[bold]save + gzip"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn(),
               TextColumn("-> {task.fields[out]}"))
    start = time.monotonic()
    with open(tmp, "wb") as out, Progress(*columns, console=console, disable=quiet,
                                          transient=False) as progress:
        sink = compress.open_sink(out, level, threads, engine)
        task = progress.add_task("save", total=total_hint or None, out="0 B")
        # the SDK's get_image() by name, done by hand to keep the response: closing it on an
        # error stops the engine's stream at once (dropping it would drain gigabytes first)
        res = client.api._get(client.api._url("/images/{0}/get", ref), stream=True)
        try:
            client.api._raise_for_status(res)

            def write(chunk: bytes) -> None:
                sink.write(chunk)
                progress.update(task, advance=len(chunk),
                                out=f"{sink.out_bytes / 1e6:,.0f} MB gz")
            saved = read_save_stream(res.iter_content(compress.CHUNK, decode_unicode=False),
                                     write, ref)
            sink.close()
            out.flush()
            os.fsync(out.fileno())
        except BaseException:
            sink.abort()
            raise
        finally:
            res.close()
        progress.update(task, total=sink.in_bytes, completed=sink.in_bytes,
                        out=f"{sink.out_bytes / 1e6:,.0f} MB gz")
    return {"uncompressed_bytes": sink.in_bytes, "compressed_bytes": sink.out_bytes,
            "sha256": sink.hexdigest(), "seconds": time.monotonic() - start,
            "compressor": " ".join(sink.cmd), "saved": saved}


def measured_facts(attrs: dict, saved: SavedImage, engine: str) -> dict:
    """Digests measured in the saved stream, checked against what the engine says: a config
    digest that cannot be measured, or layers that disagree, stop the package."""
    if saved.problems or not saved.config_digest:
        raise PackageError(f"docker save wrote a file whose image cannot be read: "
                           f"{'; '.join(saved.problems) or 'no config found'}")
    engine_layers = list((attrs.get("RootFS") or {}).get("Layers") or [])
    if engine_layers != saved.layer_diff_ids:
        raise PackageError(f"docker save wrote {len(saved.layer_diff_ids)} layers that are not "
                           f"the image's {len(engine_layers)} (RootFS.Layers): re-run make package")
    return {"config_digest": saved.config_digest, "layer_diff_ids": saved.layer_diff_ids,
            "target_digest": saved.target_digest, "saved_layout": saved.layout,
            "engine": engine}


def image_facts(image, ref: str) -> dict:
    """What the engine says about the image (its Id is the store's name for it)."""
    attrs = image.attrs
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    return {"image_id": attrs["Id"], "tags": [ref], "all_local_tags": list(attrs.get("RepoTags") or []),
            "image_created": labels.get("org.opencontainers.image.created") or attrs.get("Created"),
            "image_revision": labels.get("org.opencontainers.image.revision"),
            "image_version": labels.get("org.opencontainers.image.version"),
            "architecture": attrs.get("Architecture"), "os": attrs.get("Os"),
            "image_size_bytes": attrs.get("Size")}


def summary_table(paths: contract.SubmissionFiles, facts: dict, res: dict) -> Table:
    t = Table(title=f"make package: {paths.tarball}")
    t.add_column("item")
    t.add_column("value", overflow="fold")
    gb = res["compressed_bytes"] / 1e9
    t.add_row("image", f"{facts['tags'][0]}  config {facts['config_digest'][:19]}")
    t.add_row("engine", facts["engine"])
    t.add_row("uncompressed", f"{res['uncompressed_bytes'] / 1e6:,.1f} MB")
    t.add_row("compressed", f"{res['compressed_bytes'] / 1e6:,.1f} MB")
    t.add_row("ratio", f"{res['compressed_bytes'] / max(res['uncompressed_bytes'], 1):.3f}")
    t.add_row("seconds", f"{res['seconds']:.1f}  "
                         f"({res['uncompressed_bytes'] / 1e6 / max(res['seconds'], 1e-9):,.0f} MB/s)")
    t.add_row("compressor", res["compressor"])
    t.add_row("sha256", res["sha256"])
    t.add_row("sidecars", f"{paths.sha256.name}, {paths.manifest.name}")
    if gb > EMAIL_COMFORT_GB:
        t.add_row("[yellow]warning", f"[yellow]{gb:.1f} GB is too big to email comfortably: "
                                     f"share it as a cloud link and consider a slimmer image")
    else:
        t.add_row("email", "e-mail attachments stop at ~25 MB: send the file as a cloud-drive "
                           f"link together with {paths.paper.name}")
    return t


def package(team: str, task: str, dist: Path, level: int | None, threads: int | None, engine: str,
            quiet: bool = False) -> PackageManifest:
    from amoskit.daemon import connect as daemon  # late: TEAMNAME is checked before Docker is touched
    from docker.errors import APIError, ImageNotFound
    from requests.exceptions import RequestException

    client = daemon.connect()
    ref = f"{team}:latest"
    try:
        image = client.images.get(ref)
    except ImageNotFound:
        raise PackageError(f"image {ref} not found in the Docker engine: build it first with "
                           f"`make build TEAMNAME={team}`") from None
    facts = image_facts(image, ref)
    dist.mkdir(parents=True, exist_ok=True)
    paths = contract.SubmissionFiles.in_dist(dist, team, task)
    remove_stale_partials(paths.tarball)
    tmp = paths.tarball.with_name(f".{paths.tarball.name}.partial-{os.getpid()}")
    try:
        size = facts.get("image_size_bytes") or 0
        if level is None:
            level = compress.default_level(compress.pick_engine(engine), size)
        res = save_compressed(client, ref, tmp, level, threads, engine, size, quiet)
        facts.update(measured_facts(image.attrs, res["saved"], store.describe(client.info())))
        manifest = PackageManifest(
            file=paths.tarball.name, teamname=team, task=task,
            sha256=res["sha256"], compressed_bytes=res["compressed_bytes"],
            uncompressed_bytes=res["uncompressed_bytes"], **facts,
            version=read_version(), git_commit=git_commit(),
            packaged_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            compressor=res["compressor"], seconds=round(res["seconds"], 2))
        # sidecars first: a crash between the renames leaves an old tarball whose hash
        # no longer matches, which verify-load reports, never a new tarball with stale sidecars
        write_text_atomic(paths.sha256, sha256_line(res["sha256"], paths.tarball.name))
        write_text_atomic(paths.manifest, manifest.to_json())
        os.replace(tmp, paths.tarball)
    except OSError as exc:
        if exc.errno == errno.ENOSPC or "No space left" in str(exc):
            raise PackageError(f"no space left on the device holding {dist} while writing "
                               f"{paths.tarball.name}: free some space or choose another "
                               f"DIST=folder (nothing was left behind)") from None
        raise PackageError(f"could not write {paths.tarball}: {exc}") from None
    except (APIError, RequestException) as exc:
        raise PackageError(f"docker save of {ref} failed: "
                           f"{getattr(exc, 'explanation', None) or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    if not quiet:
        Console().print(summary_table(paths, facts, res))
    return manifest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teamname", required=True)
    ap.add_argument("--task", default=contract.DEFAULT_TASK)
    ap.add_argument("--dist", default="dist", type=Path)
    ap.add_argument("--level", type=int, default=None,
                    help="compression level of the engine: isal 0-3 (default 3; 2 for images from "
                         "3 GB), pigz and python 1-9 (default 2); see amoskit/bench/package.py")
    ap.add_argument("--threads", type=int, default=None,
                    help="compressor threads (default: usable CPUs, at least 2)")
    ap.add_argument("--engine", choices=("auto", *compress.ENGINES), default="auto",
                    help="compressor: auto = isal if installed, else pigz, else python's zlib")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    check_teamname(args.teamname)
    engine = compress.pick_engine(args.engine)
    levels = compress.LEVELS[engine]
    if args.level is not None and args.level not in levels:
        fail(f"--level {args.level} does not exist for the {engine} compressor: "
             f"use {levels.start}..{levels.stop - 1}", 2)

    interrupts.interrupt_on_termination()  # any stop removes the partial file
    try:
        package(args.teamname, args.task, args.dist, args.level, args.threads, engine,
                args.quiet)
    except PackageError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted: no package written (the partial file was removed)", 130)
    return 0


if __name__ == "__main__":
    sys.exit(main())
