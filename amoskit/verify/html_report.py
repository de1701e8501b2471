"""The verdict as one self-contained HTML page: checks, server-limit bars, and per case the overlay
picture, its legend and a table of Dice and NSD per organ.

Why: a person judges a segmentation by looking at it, and a page with the pictures inside
travels as one file (email, CI artifact) where a Markdown table and a folder of PNGs get
separated. Nothing is fetched: styles are inline and pictures are data: URIs. Rendered from the
Verdict alone (amoskit.verify.report), so every form of the report says the same.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from amoskit import contract
from amoskit.verify.report import STYLE, CaseView, Verdict, fmt

COLOURS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e", "skip": "#6e7781",
           "info": "#0969da"}
assert set(COLOURS) == set(STYLE)
GiB = 1024 ** 3

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px auto;
     max-width:1280px;color:#1f2328;padding:0 16px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:18px;margin-top:28px;border-bottom:1px solid #d0d7de}
h3{font-size:16px;margin:18px 0 6px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #d0d7de;padding:3px 8px;
     text-align:left;vertical-align:top} th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.checks td:nth-child(-n+3){white-space:nowrap}
.res{font-weight:600}
.bars{display:grid;grid-template-columns:200px 1fr 260px;gap:6px 12px;align-items:center;
      font-size:13px;max-width:900px}
.track{background:#eaeef2;border-radius:4px;height:16px;position:relative}
.fill{height:16px;border-radius:4px}
.case{border:1px solid #d0d7de;border-radius:8px;padding:8px 14px;margin:14px 0}
.casebody{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.casebody img{max-width:100%;border:1px solid #d0d7de}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;
        vertical-align:-1px}
.legend{list-style:none;padding:0;margin:6px 0;columns:2;font-size:13px}
.muted{color:#57606a;font-size:13px}
"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def badge(status: str) -> str:
    return (f'<span class="badge" style="background:{COLOURS.get(status, "#6e7781")}">'
            f'{esc(status.upper())}</span>')


def bar(what: str, value: float, limit: float, text: str, status: str | None = None) -> str:
    """One limit bar: the fill is value/limit (capped at the track), coloured by how close."""
    frac = value / limit if limit else 0.0
    status = status or ("pass" if frac < 0.9 else "warn" if frac <= 1.0 else "fail")
    return (f'<div>{esc(what)}</div><div class="track" title="{esc(text)}">'
            f'<div class="fill" style="width:{min(frac, 1.0) * 100:.1f}%;'
            f'background:{COLOURS[status]}"></div></div><div>{esc(text)}</div>')


def row_data(v: Verdict, check: str) -> dict:
    return next((r.data for r in v.rows if r.check == check), {})


def limit_bars(v: Verdict) -> str:
    """The server's limits the run was measured against, each drawn to its limit; per-case time
    relative to the slowest case (the organisers state no time limit)."""
    parts = []
    mem = row_data(v, "peak memory").get("bytes")
    if mem:
        parts.append(bar("peak memory", mem, contract.SERVER_MEMORY_BYTES,
                         f"{mem / GiB:.2f} GiB of {contract.SERVER_MEMORY.rstrip('g')} GB"))
    gpu = row_data(v, "peak GPU memory").get("bytes")
    if gpu:
        parts.append(bar("peak GPU memory", gpu, contract.SERVER_GPU_MEMORY_GB * GiB,
                         f"{gpu / GiB:.2f} GiB of {contract.SERVER_GPU_MEMORY_GB} GB (RTX 3090)"))
    times = {c.name: c.seconds for c in v.cases.values() if c.seconds}
    if times:
        slowest = max(times.values())
        for name, secs in times.items():
            parts.append(bar(f"time: {name}", secs, slowest, f"{secs:.1f} s", "info"))
    amos = row_data(v, "AMOS-sized case").get("seconds")
    if not parts:
        return '<p class="muted">No run was measured.</p>'
    return ('<div class="bars">' + "".join(parts) + "</div>" +
            (f'<p class="muted">An AMOS-sized case would take about {amos:.0f} s (estimated; see '
             f'the AMOS-sized case row). The organisers state no time limit; '
             f'{contract.SERVER_CPUS} CPUs and {contract.SERVER_MEMORY.rstrip("g")} GB are '
             f'theirs.</p>' if amos else ""))


def checks_table(v: Verdict) -> str:
    rows = "".join(
        f'<tr><td>{esc(r.step)}</td><td>{esc(r.check)}</td>'
        f'<td class="res" style="color:{COLOURS[r.status]}">{esc(r.status)}</td>'
        f'<td>{esc(r.detail)}</td></tr>' for r in v.rows)
    return ('<table class="checks"><tr><th>step</th><th>check</th><th>result</th>'
            f'<th>detail</th></tr>{rows}</table>')


def embedded_png(path: str) -> str:
    """The picture as a data: URI ('' when the file is gone)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return ""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def organ_table(c: CaseView) -> str:
    colours = {name: col for _, name, col in c.legend}
    body = []
    for organ in c.organs():
        sw = (f'<span class="swatch" style="background:{colours[organ]}"></span>'
              if organ in colours else "")
        body.append(f'<tr><td>{sw}{esc(organ)}</td><td class="num">{fmt(c.dice.get(organ))}</td>'
                    f'<td class="num">{fmt(c.nsd.get(organ))}</td></tr>')
    means = []
    for scores in (c.dice, c.nsd):
        means.append(fmt(sum(scores.values()) / len(scores)) if scores else "-")
    body.append(f'<tr><th>mean</th><th class="num">{means[0]}</th><th class="num">{means[1]}</th>'
                f'</tr>')
    return ('<table class="organs"><tr><th>organ</th><th>DSC</th><th>NSD</th></tr>' +
            "".join(body) + "</table>")


def case_section(c: CaseView) -> str:
    parts = [f'<section class="case"><h3>{esc(c.name)} {badge(c.status) if c.status else ""}</h3>']
    if c.detail:
        parts.append(f'<p class="muted">{esc(c.detail)}</p>')
    parts.append('<div class="casebody">')
    uri = embedded_png(c.picture) if c.picture else ""
    if uri:
        why = {"disagreement": "where prediction and reference disagree most",
               "organs": "showing the most organs", "range": "spread through the volume"}
        parts.append(f'<figure style="margin:0"><img alt="{esc(c.name)} overlay" src="{uri}">'
                     f'<figcaption class="muted">axial slices {esc(c.slices)}, chosen '
                     f'{esc(why.get(c.slices_by, c.slices_by))}; solid: predicted, dashed: '
                     f'reference</figcaption></figure>')
    side = []
    if c.dice or c.nsd:
        side.append(organ_table(c))
    if c.legend:
        side.append('<ul class="legend">' + "".join(
            f'<li><span class="swatch" style="background:{esc(col)}"></span>{lab} {esc(name)}</li>'
            for lab, name, col in c.legend) + "</ul>")
    facts = []
    if c.seconds is not None:
        facts.append(f"{c.seconds:.1f} s")
    if c.memory_estimate_bytes:
        facts.append(f"memory estimate {c.memory_estimate_bytes / GiB:.2f} GiB")
    if c.peak_gpu_bytes:
        facts.append(f"peak GPU {c.peak_gpu_bytes / GiB:.2f} GiB")
    if facts:
        side.append(f'<p class="muted">server-limits run: {esc(", ".join(facts))}</p>')
    parts.append(f'<div>{"".join(side)}</div></div></section>')
    return "".join(parts)


def render(v: Verdict) -> str:
    """The whole page."""
    failed = len(v.failed)
    warns = sum(r.status == "warn" for r in v.rows)
    name = Path(v.tarball).name
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{esc(v.title)}: {esc(name)}</title><style>{CSS}</style></head><body>",
           f"<h1>{esc(v.title)}: {esc(name)}</h1>",
           f'<p id="verdict">Verdict: {badge(v.status)} {failed} failed, {warns} warning(s)</p>']
    if v.reminder:
        out.append(f'<p><b>What to send:</b> {esc(v.reminder)}.</p>')
    if any(r.check in ("peak memory", "peak GPU memory") for r in v.rows) or \
            any(c.seconds for c in v.cases.values()):
        out += ["<h2>Server limits</h2>", limit_bars(v)]
    out += ["<h2>Checks</h2>", checks_table(v)]
    if v.cases:
        out.append("<h2>Cases</h2>")
        if v.scoring:
            out.append(f'<p class="muted">{esc(v.scoring)}</p>')
        out += [case_section(c) for c in v.cases.values()]
    if v.notes:
        out += ["<h2>Notes</h2>", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in v.notes) +
                "</ul>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"
