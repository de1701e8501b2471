"""The verify-load verdict: one row per check and one view per case, shown as a rich table,
saved as Markdown, JSON and a self-contained HTML page (amoskit.verify.html_report).

Why a separate module: the same rows must read the same in the terminal, in the Markdown a
person attaches to an email, in the page a person looks at and in the JSON a test parses.
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
class CaseView:
    """What the report shows of one case; each check fills in what it knows."""
    name: str
    status: str = ""                                         # the output check's result
    detail: str = ""
    dice: dict[str, float] = field(default_factory=dict)     # organ name -> Dice
    nsd: dict[str, float] = field(default_factory=dict)      # organ name -> NSD
    seconds: float | None = None                             # engine time, server-limits run
    peak_gpu_bytes: int | None = None
    memory_estimate_bytes: int | None = None                 # the engine's admission estimate
    picture: str = ""                                        # overlay PNG
    slices: list[int] = field(default_factory=list)
    slices_by: str = ""                                      # why those slices
    legend: list[tuple[int, str, str]] = field(default_factory=list)  # label, organ, colour

    def organs(self) -> list[str]:
        """Scored organs in label order (Dice's order, then any only NSD scored)."""
        return list(self.dice) + [o for o in self.nsd if o not in self.dice]


@dataclass
class Verdict:
    tarball: str
    teamname: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reminder: str = ""
    cases: dict[str, CaseView] = field(default_factory=dict)
    scoring: str = ""        # how Dice and NSD were computed (the NSD tolerance)
    title: str = "verify-load"

    def case(self, name: str) -> CaseView:
        """The view of one case, made on first use."""
        return self.cases.setdefault(name, CaseView(name))

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
        t = Table(title=f"{self.title}: {self.tarball}", show_lines=False)
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

    def markdown_cases(self, md_dir: Path | None) -> list[str]:
        """Per case: Dice and NSD per organ, and the overlay picture linked (relative to the
        Markdown's folder when given)."""
        lines = []
        for c in self.cases.values():
            if not (c.dice or c.picture):
                continue
            lines += ["", f"## {c.name}", ""]
            if c.dice or c.nsd:
                lines += ["| organ | DSC | NSD |", "|---|---|---|"]
                for organ in c.organs():
                    lines.append(f"| {organ} | {fmt(c.dice.get(organ))} | "
                                 f"{fmt(c.nsd.get(organ))} |")
                lines.append("")
            if c.picture:
                pic = Path(c.picture)
                if md_dir is not None:
                    pic = Path(os.path.relpath(pic.resolve(), md_dir.resolve()))
                lines.append(f"![{c.name}: slices {c.slices}]({pic.as_posix().replace(' ', '%20')})")
        if self.scoring and self.cases:
            lines += ["", self.scoring]
        return lines

    def markdown(self, md_dir: Path | None = None) -> str:
        def esc(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", "<br>")
        lines = [f"# {self.title}: `{Path(self.tarball).name}`", "",
                 f"Verdict: **{self.status.upper()}** ({len(self.failed)} failed, "
                 f"{sum(r.status == 'warn' for r in self.rows)} warnings). "
                 f"Checked {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.", "",
                 "| step | check | result | detail |", "|---|---|---|---|"]
        for r in self.rows:
            lines.append(f"| {esc(r.step)} | {esc(r.check)} | {r.status} | {esc(r.detail)} |")
        lines += self.markdown_cases(md_dir)
        if self.reminder:
            lines += ["", "## What to send", "", self.reminder[0].upper() + self.reminder[1:] + "."]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict:
        return {"tarball": self.tarball, "teamname": self.teamname, "status": self.status,
                "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "rows": [asdict(r) for r in self.rows], "notes": self.notes,
                "reminder": self.reminder, "scoring": self.scoring,
                "cases": {k: asdict(c) for k, c in self.cases.items()}}

    def write(self, md_path: Path, json_path: Path, html_path: Path | None = None) -> None:
        """Each file under a temporary name, then renamed."""
        from amoskit.verify import html_report
        out = [(md_path, self.markdown(md_path.parent)),
               (json_path, json.dumps(self.to_json(), indent=2) + "\n")]
        if html_path is not None:
            out.append((html_path, html_report.render(self)))
        for path, text in out:
            tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
            tmp.write_text(text)
            os.replace(tmp, path)

    def print(self, console: Console | None = None) -> None:
        (console or Console()).print(self.table())


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
