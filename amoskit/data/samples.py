"""Write N synthetic CT phantoms and their reference labels: `make samples`.

Why: the organisers' cases have arbitrary names, so ours do too (mixed case, dots, a space);
samples/ is git-ignored and regenerated on demand with the one default scale.

    python -m amoskit.data.samples --out samples --count 4
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from amoskit.data.phantoms import DEFAULT_SCALE, make_phantom, write_phantom

# Deliberately awkward names; seeds 9000+ are never used for training.
NAMES = ["Patient A.scan-01", "liver.CT.2024", "AbdoMen_003", "x.y.z case", "Case-05.final", "abd_CT.v2",
         "Mixed Case 7", "sample.8.ct", "CT Nine", "ten.Ten.10"]
SAMPLE_SEED0 = 9000


def sample_name(i: int) -> str:
    base = NAMES[i % len(NAMES)]
    return base if i < len(NAMES) else f"{base}.{i // len(NAMES)}"


def make_samples(out: Path, count: int, scale: float = DEFAULT_SCALE, seed0: int = SAMPLE_SEED0) -> list[Path]:
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    written = []
    console = Console(stderr=True)
    table = Table(title=f"samples in {out} (scale {scale})")
    for col in ("file", "size (x, y, z)", "spacing mm", "flipped axes", "seconds"):
        table.add_column(col)
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("writing phantoms", total=count)
        for i in range(count):
            t0 = time.perf_counter()
            name = sample_name(i) + ".nii.gz"
            ph = make_phantom(seed0 + i, scale)
            write_phantom(ph, out / "images" / name, out / "labels" / name)
            written.append(out / "images" / name)
            d = ph.image.GetDirection()
            flips = "".join(ax for ax, v in zip("xyz", (d[0], d[4], d[8])) if v < 0) or "-"
            table.add_row(name, str(ph.image.GetSize()), ", ".join(f"{s:.2f}" for s in ph.image.GetSpacing()),
                          flips, f"{time.perf_counter() - t0:.1f}")
            progress.advance(task)
    console.print(table)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("samples"))
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--scale", type=float, default=DEFAULT_SCALE)
    ap.add_argument("--seed", type=int, default=SAMPLE_SEED0, help="seed of the first case (9000+ never trained on)")
    args = ap.parse_args(argv)
    make_samples(args.out, args.count, args.scale, args.seed)


if __name__ == "__main__":
    main()
