"""verify-load's live output on stderr: byte progress for reading and loading the tarball, a
spinner with the last log line for each container run.

Why apart: the checks decide verdicts; how long they take is shown here, on stderr, so that the
verdict table on stdout stays clean.
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn, TransferSpeedColumn)

from amoskit.daemon import organiser_run

console = Console(stderr=True)


def bytes_progress(label: str) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)


def run_stage(label: str, cmd: list[str], env: dict, log: Path, timeout: float,
              cidfile: Path | None = None) -> organiser_run.RunResult:
    """One logged container run, its latest output line shown beside a spinner."""
    with Progress(SpinnerColumn(), TextColumn(f"[bold]{label}"), TimeElapsedColumn(),
                  TextColumn("{task.fields[line]}"), console=console, transient=False) as prog:
        task = prog.add_task(label, line="")

        def on_line(line: str):
            prog.update(task, line=line[-90:])
        return organiser_run.run_logged(cmd, env, log, timeout, on_line, cidfile)
