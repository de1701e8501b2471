"""The verify-load verdict: one row per check, shown as a rich table, saved as Markdown and JSON.

Why a separate module: the same rows must read the same in the terminal, in the Markdown a
person attaches to an email, and in the JSON a test or CI job parses.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim", "info": "cyan"}
# verify-load's steps, in order: each check module adds its rows under one of them
INTEGRITY, CONTENTS, LOAD, RUN, OUTPUTS, DELIVER = (
    "1 integrity", "2 contents", "3 load", "4 run", "5 outputs", "6 deliver")


@dataclass
class Row:
    step: str          # "1 integrity", "2 contents", ...
    check: str
    status: str        # pass, warn, fail, skip, info
    detail: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class Verdict:
    tarball: str
    teamname: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reminder: str = ""

    def add(self, step: str, check: str, status: str, detail: str = "", **data) -> Row:
        """The one way checks report: every check function takes the Verdict and adds its rows."""
        row = Row(step, check, status, detail, data)
        self.rows.append(row)
        return row

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if r.status == "fail"]

    @property
    def status(self) -> str:
        if self.failed:
            return "fail"
        return "warn" if any(r.status == "warn" for r in self.rows) else "pass"

    def table(self) -> Table:
        t = Table(title=f"verify-load: {self.tarball}", show_lines=False)
        t.add_column("step", no_wrap=True)
        t.add_column("check", no_wrap=True)
        t.add_column("result", no_wrap=True)
        t.add_column("detail", overflow="fold")
        for r in self.rows:
            t.add_row(r.step, r.check, f"[{STYLE[r.status]}]{r.status}", r.detail)
        s = self.status
        t.add_row("", "[bold]verdict", f"[bold {STYLE[s]}]{s.upper()}",
                  f"{len(self.failed)} failed, "
                  f"{sum(r.status == 'warn' for r in self.rows)} warning(s)")
        return t

    def markdown(self) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", "<br>")
        lines = [f"# verify-load: `{Path(self.tarball).name}`", "",
                 f"Verdict: **{self.status.upper()}** ({len(self.failed)} failed, "
                 f"{sum(r.status == 'warn' for r in self.rows)} warnings). "
                 f"Checked {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.", "",
                 "| step | check | result | detail |", "|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {esc(r.step)} | {esc(r.check)} | {r.status} | {esc(r.detail)} |")
        if self.reminder:
            lines += ["", "## What to send", "", self.reminder[0].upper() + self.reminder[1:] + "."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"tarball": self.tarball, "teamname": self.teamname, "status": self.status,
                "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "rows": [asdict(r) for r in self.rows], "notes": self.notes,
                "reminder": self.reminder}

    def write(self, md_path: Path, json_path: Path) -> None:
        """Both files under temporary names, then renamed."""
        for path, text in ((md_path, self.markdown()),
                           (json_path, json.dumps(self.to_json(), indent=2) + "\n")):
            tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)

    def print(self, console: Console | None = None) -> None:
        (console or Console()).print(self.table())
