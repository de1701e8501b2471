"""`make bench-build`: how much of a cold build a code-only change costs.

Times a cold build of both stages (no cache, fresh tags), then changes the content of one file in a
temporary copy of inference/ and times the rebuild. Target: rebuild / cold <= 0.1, with only the
code layer (and the per-build labels) rebuilt. The baseline is measured in the same run, so the
ratio holds on any machine. The bench images are removed afterwards unless --keep.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from amoskit import contract
from amoskit.image import build_context
from amoskit.verbs import build as build_image
from amoskit.daemon import connect as daemon

TEAM = "benchbuild"
TARGET = 0.10
console = Console(highlight=False)


def timed_build(client, inference: Path, args, tag: str, nocache: bool):
    start = time.monotonic()
    builder, runtime, _ = build_image.build_stages(
        client, teamname=TEAM, task="task1", version="bench", base_image=args.base_image,
        torch_version=args.torch_version, torch_index_url=args.torch_index_url,
        wheelhouse=Path(args.wheelhouse) if args.wheelhouse else None, weights=Path(args.weights),
        inference=inference, tags=[tag], nocache=nocache)
    return time.monotonic() - start, builder, runtime


def change_one_file(inference: Path) -> Path:
    """Append a comment to run_inference.py: new content, same behaviour."""
    target = inference / "run_inference.py"
    with open(target, "a") as fh:
        fh.write(f"\n# bench-build content change {time.time_ns()}\n")
    return target


def rebuilt_rows(stage: str, result) -> list[tuple[str, str, str, str]]:
    return [(stage, f"{s.number}", s.instruction[:60], "yes" if s.makes_layer else "")
            for s in result.rebuilt]


def main(argv=None) -> int:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-image", default=env("BASE_IMAGE", "python:3.11-slim-bookworm"))
    p.add_argument("--torch-version", default=env("TORCH_VERSION", contract.IMAGE_TORCH_VERSION))
    p.add_argument("--torch-index-url", default=env("TORCH_INDEX_URL", ""))
    p.add_argument("--wheelhouse", default=env("WHEELHOUSE", ""))
    p.add_argument("--weights", default=env("WEIGHTS", "weights"))
    p.add_argument("--keep", action="store_true", help="keep the bench images")
    a = p.parse_args(argv)
    try:
        build_context.check_weights(Path(a.weights))
    except build_context.ContextError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    client = daemon.connect()
    try:
        build_image.ensure_base_image(client, a.base_image)
    except SystemExit as exc:
        print(exc.code, file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="amos-bench-"))
    tags = [f"{TEAM}:cold", f"{TEAM}:rebuild"]
    try:
        inference = tmp / "inference"
        shutil.copytree(build_context.REPO / "inference", inference,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        console.rule("cold build (no cache)")
        cold_s, cold_b, cold_r = timed_build(client, inference, a, tags[0], nocache=True)
        changed = change_one_file(inference)
        console.rule(f"rebuild after changing {changed.name}")
        re_s, re_b, re_r = timed_build(client, inference, a, tags[1], nocache=False)
    except build_image.BuildFailed as exc:
        console.print(f"[red]error:[/] build failed: {exc}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not a.keep:
            for tag in tags + [f"{TEAM}-builder:bench"]:
                try:
                    client.images.remove(tag, noprune=False)
                except Exception:  # already gone or still used by a tag we keep
                    pass
    ratio = re_s / cold_s
    t = Table(title="make bench-build", title_justify="left")
    t.add_column("build")
    t.add_column("seconds", justify="right")
    t.add_column("builder stage", justify="right")
    t.add_column("runtime stage", justify="right")
    t.add_row("cold (no cache)", f"{cold_s:.1f}", f"{cold_b.seconds:.1f}", f"{cold_r.seconds:.1f}")
    t.add_row("rebuild, 1 file changed", f"{re_s:.1f}", f"{re_b.seconds:.1f}", f"{re_r.seconds:.1f}")
    verdict = "[green]OK[/]" if ratio <= TARGET else "[red]over target[/]"
    t.add_row("ratio rebuild / cold", f"{ratio:.3f}", "", f"target <= {TARGET} {verdict}")
    console.print(t)
    r = Table(title="steps rebuilt after the code change", title_justify="left")
    r.add_column("stage", no_wrap=True)
    r.add_column("step", justify="right", no_wrap=True)
    r.add_column("instruction", overflow="ellipsis", no_wrap=True, max_width=48)
    r.add_column("new layer", no_wrap=True)
    rows = rebuilt_rows("builder", re_b) + rebuilt_rows("runtime", re_r)
    for row in rows:
        r.add_row(*row)
    console.print(r)
    layers = [row[2] for row in rows if row[3]]
    console.print(f"{len(layers)} filesystem layer(s) rebuilt: " + ", ".join(layers), markup=False)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
