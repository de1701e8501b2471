"""`make build`: build the builder and runtime stages through the Docker SDK and report the result.

The SDK's low-level `APIClient.build` drives the classic builder (the one every Docker engine has);
its log streams into a rich live view, and the result ends in a table (amoskit/image/report.py) with the
image's size check. Exit status: 0 built and size check passed, 1 build or size check failed,
2 bad input (team name, weights, base image, engine) found before anything was built.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from docker.errors import APIError, DockerException, ImageNotFound
from requests.exceptions import RequestException
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from amoskit.image import build_context
from amoskit import contract
from amoskit.daemon import connect as daemon
from amoskit.image import report as build_report
from amoskit.image.torchvision_pair import NoTorchvisionPair, torchvision_for

REPO = build_context.REPO
PLATFORM = "linux/amd64"  # the organisers' server; also when built on an arm64 machine
FALLBACK = ("without a registry use the offline fallback: make base-image wheelhouse, then "
            "make build BASE_IMAGE=<LOCAL_BASE_IMAGE> WHEELHOUSE=wheelhouse (make demo does this itself)")
STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
console = Console(stderr=False, highlight=False)


class BuildFailed(Exception):
    """The engine reported an error while building; the message is its last line."""


@dataclass
class Step:
    """One Dockerfile instruction as the classic builder ran it."""
    number: int
    instruction: str
    cached: bool | None = False  # None: FROM / global ARG, which the cache does not apply to
    seconds: float = 0.0

    @property
    def makes_layer(self) -> bool:
        """COPY / ADD / RUN change the filesystem; the rest only change the image's metadata."""
        return self.instruction.split(" ", 1)[0].upper() in ("COPY", "ADD", "RUN")


@dataclass
class StageResult:
    image_id: str
    seconds: float
    steps: list[Step] = field(default_factory=list)

    @property
    def rebuilt(self) -> list[Step]:
        return [s for s in self.steps if s.cached is False]


def check_teamname(name: str) -> None:
    problem = contract.teamname_problem(name, "build")
    if problem:
        raise SystemExit(f"error: {problem}")


def ensure_base_image(client, base_image: str) -> None:
    """Use BASE_IMAGE from the local store, else pull it; say how to go offline when neither works."""
    try:
        client.images.get(base_image)
        return
    except ImageNotFound:
        pass
    console.print(f"BASE_IMAGE={base_image} is not here yet: pulling it for {PLATFORM} ...")
    try:
        client.images.pull(base_image, platform=PLATFORM)
    except (APIError, DockerException) as exc:
        reason = str(getattr(exc, "explanation", None) or exc).splitlines()[0][:160]
        raise SystemExit(f"error: BASE_IMAGE={base_image} is not available locally and cannot be "
                         f"pulled ({reason}); {FALLBACK}") from None


def base_available(client, base_image: str) -> bool:
    """True when BASE_IMAGE is local or can be pulled (used by make demo to pick the fallback)."""
    try:
        ensure_base_image(client, base_image)
        return True
    except SystemExit:
        return False


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _stream_view(title: str, progress: Progress, tail: deque) -> Group:
    return Group(progress, Panel(Text("\n".join(tail), overflow="ellipsis", no_wrap=True),
                                 title=title, title_align="left", border_style="dim"))


def run_build(api, ctx: build_context.Context, tag: str, buildargs: dict[str, str],
              title: str, nocache: bool = False, log_file=None, offline: bool = False) -> StageResult:
    """Build one stage from a context tar, streaming its log; return the image and its steps.

    offline: RUN steps get no network at all, which proves a wheelhouse build needs none."""
    start = time.monotonic()
    steps: list[Step] = []
    image_id = ""
    tail: deque[str] = deque(maxlen=12)
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("step {task.completed:.0f}/{task.total:.0f}"),
                        TimeElapsedColumn(), console=console)
    task = progress.add_task(title, total=None)
    live = Live(_stream_view(title, progress, tail), console=console, refresh_per_second=8,
                transient=True) if console.is_terminal else None
    step_start = start
    seen_from = False
    try:
        if live:
            live.start()
        with open(ctx.tar_path, "rb") as fh:
            stream = api.build(fileobj=fh, custom_context=True, dockerfile=ctx.dockerfile, tag=tag,
                               buildargs={**ctx.buildargs, **buildargs}, nocache=nocache, rm=True,
                               forcerm=True, pull=False, platform=PLATFORM, decode=True,
                               network_mode="none" if offline else None)
            for chunk in stream:
                if "error" in chunk:
                    raise BuildFailed(chunk["error"].strip())
                if "aux" in chunk and "ID" in chunk.get("aux", {}):
                    image_id = chunk["aux"]["ID"]
                text = chunk.get("stream") or chunk.get("status") or ""
                for line in text.splitlines():
                    line = line.rstrip()
                    if not line:
                        continue
                    if log_file:
                        log_file.write(line + "\n")
                    m = STEP_RE.match(line)
                    if m:
                        now = time.monotonic()
                        if steps:
                            steps[-1].seconds = now - step_start
                        step_start = now
                        word = m.group(3).split(" ", 1)[0].upper()
                        seen_from = seen_from or word == "FROM"
                        steps.append(Step(int(m.group(1)), m.group(3),
                                          None if word == "FROM" or not seen_from else False))
                        progress.update(task, completed=int(m.group(1)) - 1, total=int(m.group(2)))
                    elif "---> Using cache" in line and steps:
                        steps[-1].cached = True
                    tail.append(line)
                    if live:
                        live.update(_stream_view(title, progress, tail))
                    else:
                        console.print(line, markup=False, soft_wrap=True)
    finally:
        if live:
            live.stop()
    if steps:
        steps[-1].seconds = time.monotonic() - step_start
    if not image_id:
        image_id = api.inspect_image(tag)["Id"]
    cached = sum(s.cached is True for s in steps)
    countable = sum(s.cached is not None for s in steps)
    console.print(f"[green]✓[/] {title}: {image_id[7:19]} in {time.monotonic() - start:.1f} s "
                  f"({cached}/{countable} steps from cache)")
    return StageResult(image_id, time.monotonic() - start, steps)


def build_stages(client, *, teamname: str, task: str, version: str, base_image: str,
                 torch_version: str, torch_index_url: str, wheelhouse: Path | None,
                 weights: Path, inference: Path, tags: list[str], nocache: bool = False,
                 log_path: Path | None = None, folds: str = "", checkpoint: str = "", engine: str = "fast",
                 trainer_files: list[Path] | None = None, own_trainers: list[str] | None = None,
                 needs_timm: bool = False) -> tuple[StageResult, StageResult, build_context.Context]:
    """Both stages, builder then runtime; the first tag names the runtime image. needs_timm: the builder
    adds timm and the torchvision built for TORCH_VERSION (Primus networks, ENGINE=nnunet)."""
    api = client.api
    builder_tag = f"{teamname}-builder:{version}"
    with tempfile.TemporaryDirectory(prefix="amos-build-") as tmp, \
            open(log_path or os.devnull, "w") as log_file:
        workdir = Path(tmp)
        runtime_ctx = build_context.runtime_context(workdir, weights, inference, folds=folds,
                                                    checkpoint=checkpoint, engine=engine,
                                                    trainer_files=trainer_files, own_trainers=own_trainers)
        builder_ctx = build_context.builder_context(workdir, wheelhouse)
        builder = run_build(api, builder_ctx, builder_tag,
                            {"BASE_IMAGE": base_image, "TORCH_VERSION": torch_version,
                             "TORCH_INDEX_URL": torch_index_url, "ENGINE": engine,
                             "TORCHVISION_VERSION": torchvision_for(torch_version) if needs_timm else ""},
                            "builder stage (/opt/venv)", nocache=nocache, log_file=log_file,
                            offline=wheelhouse is not None)
        builder_ctx.remove()
        runtime = run_build(api, runtime_ctx, tags[0],
                            {"BUILDER_IMAGE": builder_tag, "BASE_IMAGE": base_image,
                             "TEAMNAME": teamname, "TASK": task, "VERSION": version,
                             "CREATED": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                             "REVISION": git_revision()},
                            "runtime stage (shipped image)", nocache=nocache, log_file=log_file,
                            offline=True)
        runtime_ctx.remove()
    for full in tags[1:]:
        repo, _, tag = full.rpartition(":")
        api.tag(runtime.image_id, repo, tag)
    return builder, runtime, runtime_ctx


def show_weights(staged, weights: Path, log_path: Path) -> None:
    """WEIGHTS before and after: only what inference reads is shipped; say what was left out, and what
    the image's weights stage took out of the checkpoints (its line in the build log)."""
    from rich.table import Table
    shipped = staged.before_bytes - sum(staged.left_out.values())
    table = Table(title=f"weights: {weights}", title_justify="left")
    table.add_column("files")
    table.add_column("MB", justify="right")
    table.add_row("in WEIGHTS", f"{staged.before_bytes / 1e6:,.1f}")
    for kind, size in sorted(staged.left_out.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  left out: {kind}", f"{size / 1e6:,.1f}")
    table.add_row("copied for the image", f"{shipped / 1e6:,.1f}")
    slimmed = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.startswith("checkpoints: ")]
    if slimmed:  # "checkpoints: A MB -> B MB (training state dropped)", printed by amosseg/slim_checkpoints.py
        table.add_row(f"  of which {slimmed[-1].removeprefix('checkpoints: ')}", "")
    console.print(table)


def parse_args(argv=None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teamname", default=env("TEAMNAME", "demoteam"))
    p.add_argument("--task", default=env("TASK", contract.DEFAULT_TASK))
    p.add_argument("--version", default=env("VERSION") or (REPO / "VERSION").read_text().strip())
    p.add_argument("--base-image", default=env("BASE_IMAGE", "python:3.11-slim-bookworm"))
    p.add_argument("--torch-version", default=env("TORCH_VERSION", contract.IMAGE_TORCH_VERSION))
    p.add_argument("--torch-index-url", default=env("TORCH_INDEX_URL", contract.IMAGE_TORCH_INDEX_URL))
    p.add_argument("--wheelhouse", default=env("WHEELHOUSE", ""), help="folder of wheels (offline)")
    p.add_argument("--weights", default=env("WEIGHTS", "weights"), help="nnU-Net v2 model folder")
    p.add_argument("--folds", default=env("FOLDS", ""), help="folds the image runs, e.g. 0,1 or all (empty: nnU-Net's default)")
    p.add_argument("--checkpoint", default=env("CHECKPOINT", ""), help="checkpoint file (empty: checkpoint_final.pth)")
    p.add_argument("--engine", default=env("ENGINE", ""),
                   help="auto (empty), fast or nnunet (nnU-Net's own predictor in the image)")
    p.add_argument("--trainer-code", default=env("TRAINER_CODE", ""),
                   help="your nnU-Net trainer's .py file or folder (ENGINE=nnunet runs it)")
    p.add_argument("--inference", default=str(REPO / "inference"), help=argparse.SUPPRESS)
    p.add_argument("--nocache", action="store_true", help="rebuild every layer")
    p.add_argument("--check-base", action="store_true",
                   help="only say whether BASE_IMAGE is local or pullable (exit 0) or not (exit 3)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    try:
        if a.check_base:
            return 0 if base_available(daemon.connect(), a.base_image) else 3
        check_teamname(a.teamname)
        weights, inference = Path(a.weights), Path(a.inference)
        choice = build_context.check_weights(weights, a.folds, a.checkpoint)  # before Docker: the commonest mistake
        console.print(f"weights: {choice.summary()} [dim](what to run: {choice.source})[/]")
        chosen = build_context.choose_engine(weights, choice, a.engine, a.trainer_code)
        if chosen.networks:
            console.print(f"networks: {'; '.join(chosen.networks)}", markup=False)
        console.print(f"engine: {chosen.engine} ({chosen.reason})", markup=False)
        if chosen.needs_timm:  # before Docker: a TORCH_VERSION with no known torchvision is refused here
            console.print(f"extra: timm, torchvision=={torchvision_for(a.torch_version)} ({chosen.needs_timm})",
                          markup=False)
        wheelhouse = Path(a.wheelhouse) if a.wheelhouse else None
        client = daemon.connect()
        ensure_base_image(client, a.base_image)
        tags = [f"{a.teamname}:{a.version}", f"{a.teamname}:latest"]
        log_path = Path(tempfile.gettempdir()) / f"amos-build-{a.teamname}.log"
        start = time.monotonic()
        try:
            builder, runtime, ctx = build_stages(
                client, teamname=a.teamname, task=a.task, version=a.version,
                base_image=a.base_image, torch_version=a.torch_version,
                torch_index_url=a.torch_index_url, wheelhouse=wheelhouse, weights=weights,
                inference=inference, tags=tags, nocache=a.nocache, log_path=log_path,
                folds=a.folds, checkpoint=a.checkpoint, engine=chosen.engine,
                trainer_files=chosen.trainer_files, own_trainers=chosen.own_trainers,
                needs_timm=bool(chosen.needs_timm))
        except BuildFailed as exc:
            console.print(f"[red]error:[/] build failed: {exc} (full log: {log_path})")
            return 1
        seconds = time.monotonic() - start
        report = build_report.collect(client, runtime.image_id, a.base_image, ctx.bytes_by_folder)
        if ctx.weights is not None:
            show_weights(ctx.weights, weights, log_path)
        build_report.show(console, report, tags, seconds, builder.seconds, runtime.seconds)
        return 0 if report.size_ok else 1
    except (build_context.ContextError, NoTorchvisionPair) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (APIError, DockerException, RequestException) as exc:   # the engine failed mid-build
        print(f"error: {daemon.api_error_line(exc, f'build {a.teamname}')}", file=sys.stderr)
        return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
