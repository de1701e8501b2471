"""Headless Chromium (Debian's package) for the report tests: the page's DOM after rendering, and a
screenshot judged by its pixels.

Why a real browser: an HTML report is only as good as what a person sees; parsing our own string
back would pass on a page that renders blank. `.ci/run` installs chromium and sets
REQUIRE_BROWSER=1, where a missing browser is a failure, not a skip. Chromium runs as root here,
so with --no-sandbox, and with a throwaway profile removed afterwards.
"""
from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

REQUIRE_BROWSER = os.environ.get("REQUIRE_BROWSER") == "1"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        message = "no chromium (apt-get install chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(f"REQUIRE_BROWSER=1 but {message}", pytrace=False)
        pytest.skip(message)
    return exe


def run_chromium(page: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="amoskit-chromium-") as profile:
        return subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args,
             page.resolve().as_uri()],
            capture_output=True, text=True, timeout=timeout, check=False)


def rendered_dom(page: Path) -> str:
    """The DOM as Chromium serialises it after loading the page."""
    proc = run_chromium(page, "--dump-dom")
    assert proc.returncode == 0 and "<body" in proc.stdout, proc.stderr[-2000:]
    return proc.stdout


def text_of(dom: str) -> str:
    """Visible text: tags stripped (style and script dropped), entities resolved, spaces folded."""
    dom = re.sub(r"(?is)<(style|script)\b.*?</\1>", " ", dom)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"(?s)<[^>]+>", " ", dom))).strip()


def elements(dom: str, tag: str, cls: str) -> list[str]:
    """Text of each <tag class="cls"> ... </tag> (not nested in itself)."""
    pattern = rf'(?is)<{tag}\b[^>]*class="[^"]*\b{re.escape(cls)}\b[^"]*"[^>]*>(.*?)</{tag}>'
    return [text_of(m) for m in re.findall(pattern, dom)]


def screenshot(page: Path, out_png: Path, width: int = 1280, height: int = 2400) -> np.ndarray:
    """The page rendered to out_png; its pixels (h, w, 3) as floats in 0..1."""
    proc = run_chromium(page, f"--window-size={width},{height}", f"--screenshot={out_png}")
    assert proc.returncode == 0 and out_png.exists(), proc.stderr[-2000:]
    import matplotlib.image as mpimg
    return mpimg.imread(str(out_png))[..., :3]


def not_blank(px: np.ndarray) -> dict:
    """What a rendered page with text, colour and pictures shows: enough non-white pixels,
    saturated colour (badges, outlines) and many grey levels (the CT slices)."""
    non_white = float(np.mean(px.min(axis=2) < 0.95))
    saturation = px.max(axis=2) - px.min(axis=2)
    coloured = float(np.mean(saturation > 0.3))
    greys = len(np.unique((px[saturation < 0.02][:, 0] * 255).astype(np.uint8)))
    return {"non_white": non_white, "coloured": coloured, "grey_levels": greys}
