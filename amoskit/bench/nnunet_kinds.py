"""Every nnU-Net folder kind through our engine against nnU-Net's own answer on the same inputs.

Why: the engine reimplements nnU-Net's inference; the only proof that it gives nnU-Net's answer is
running both on folders nnU-Net itself planned and trained (`amoskit.devtools.nnunet_zoo`, whose
`zoo.json` holds the models, the inputs and `nnUNetv2_predict` / `nnUNetv2_ensemble` /
`nnUNetv2_apply_postprocessing` outputs with their wall times). Prints one row per kind: cases,
lowest voxel agreement, same geometry, and seconds ours vs nnU-Net's (both CPU, TTA off, whole
command including start-up).

    python -m amoskit.bench.nnunet_kinds [--zoo .cache/nnunet-zoo] [--kind 2d ...]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from rich.console import Console
from rich.table import Table

from amoskit import REPO

ZOO = REPO / ".cache" / "nnunet-zoo"
SCRIPT = REPO / "inference" / "run_inference.py"
KINDS = ("3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres", "resenc_m", "regions", "ensemble", "ensemble_pp",
         "best", "zip")
# Kinds built beside the zoo on demand: plans from nnU-Net 2.2.1 (before the `architecture` key; its own
# virtualenv, about 6 min once) and nnU-Net's own nnUNetTrainerBN (about 1 min once).
EXTRA_KINDS = ("old_plans", "bn")
ALL_KINDS = KINDS + EXTRA_KINDS
# The engine make build chooses where it is not the fast one (nnUNetTrainerBN builds its own network).
KIND_ENGINE = {"bn": "nnunet"}
OLD_ZOO = REPO / ".cache" / "nnunet-old-zoo"


def load_zoo(zoo: Path = ZOO, build: bool = True) -> dict:
    """zoo.json, building the zoo first (cached; about 20 minutes on 2 cores) when it is missing."""
    manifest = zoo / "zoo.json"
    if build:
        subprocess.run([sys.executable, "-m", "amoskit.devtools.nnunet_zoo", "--out", str(zoo)], check=True,
                       cwd=REPO)
    return json.loads(manifest.read_text())


def load_old_zoo(old_zoo: Path = OLD_ZOO) -> dict:
    """old_zoo.json, built first when missing or stale (amoskit.devtools.nnunet_old_zoo; cached)."""
    proc = subprocess.run([sys.executable, "-m", "amoskit.devtools.nnunet_old_zoo", "--out", str(old_zoo)],
                          cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"building the old nnU-Net zoo failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return json.loads((old_zoo / "old_zoo.json").read_text())


def with_extra_kinds(zoo: dict, kinds) -> dict:
    """The zoo with the EXTRA_KINDS among `kinds` added to zoo["kinds"] (built when missing)."""
    extra = {}
    if "old_plans" in kinds:
        old = load_old_zoo()
        extra["old_plans"] = {"model_folder": old["model_folder"], "folds": old["folds"],
                              "reference": old["reference"], "seconds": old["predict_seconds"]}
    if "bn" in kinds:
        from amoskit.devtools import nnunet_own_trainer
        bn = nnunet_own_trainer.build(zoo)
        extra["bn"] = {"model_folder": bn["model_folder"], "folds": [bn["folds"]], "reference": bn["reference"],
                       "seconds": bn["nnunet_seconds"]}
    return {**zoo, "kinds": {**zoo["kinds"], **extra}}


def _choice_folder(zoo: dict, tmp: Path, postprocessing: bool) -> Path:
    """The ensemble's members side by side with an amosseg_choice.json (what a user writes by hand)."""
    rec = zoo["kinds"]["ensemble"]
    folder = tmp / ("ensemble_pp" if postprocessing else "ensemble")
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for m in rec["members"]:
        src = Path(m["model_folder"])
        (folder / src.name).is_symlink() or (folder / src.name).symlink_to(src)
        names.append(src.name)
    choice = {"models": names, "folds": [str(f) for f in rec["folds"]]}
    if postprocessing:
        pkl = Path(zoo["kinds"]["ensemble_pp"]["postprocessing_pkl"])
        shutil.copy(pkl, folder / "postprocessing.pkl")
        if pkl.with_suffix(".json").is_file():
            shutil.copy(pkl.with_suffix(".json"), folder / "postprocessing.json")
        choice["postprocessing"] = "postprocessing.json"
    (folder / "amosseg_choice.json").write_text(json.dumps(choice))
    return folder


def model_for(zoo: dict, kind: str, tmp: Path) -> tuple[Path, str, Path]:
    """(MODEL_DIR, FOLDS, reference folder) for a kind."""
    if kind in ("ensemble", "ensemble_pp"):
        return _choice_folder(zoo, tmp, kind == "ensemble_pp"), "", Path(zoo["kinds"][kind]["reference"])
    if kind in ("best", "zip"):  # the Dataset folder: what find_best_configuration chose, with postprocessing
        model = Path(zoo["zip"]) if kind == "zip" else Path(zoo["datasets"]["labels"]["results"])
        return model, "", Path(zoo["kinds"]["best"]["reference"])
    rec = zoo["kinds"][kind]
    return Path(rec["model_folder"]), ",".join(str(f) for f in rec["folds"]), Path(rec["reference"])


@dataclass
class Result:
    kind: str
    engine: str = "fast"
    cases: int = 0
    agreement: list[float] = field(default_factory=list)
    same_geometry: bool = True
    seconds: float = 0.0
    nnunet_seconds: float = 0.0
    log: str = ""
    rc: int = 0


def _geometry(img: sitk.Image) -> tuple:
    return (img.GetSize(), tuple(np.round(img.GetSpacing(), 5)), tuple(np.round(img.GetOrigin(), 4)),
            tuple(np.round(img.GetDirection(), 5)))


def compare(zoo: dict, kind: str, tmp: Path, engine: str = "fast") -> Result:
    """Run an engine (CPU, TTA off) on the zoo's inputs with the kind's model; compare with nnU-Net's."""
    engine = KIND_ENGINE.get(kind, engine)
    model, folds, reference = model_for(zoo, kind, tmp)
    out = tmp / f"ours-{engine}-{kind}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "INPUT_DIR": zoo["inputs"], "OUTPUT_DIR": str(out), "MODEL_DIR": str(model),
           "FOLDS": folds, "ENGINE": engine, "TTA": "0", "FORCE_CPU": "1", "COLUMNS": "160"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=1800)
    r = Result(kind, engine, seconds=time.perf_counter() - t0, log=proc.stdout + proc.stderr, rc=proc.returncode)
    rec = zoo["kinds"]["best" if kind == "zip" else kind]
    r.nnunet_seconds = float(rec.get("seconds", 0.0)) + float(rec.get("ensemble_seconds", 0.0))
    if proc.returncode != 0:
        return r
    for ref in sorted(reference.glob("*.nii.gz")):
        ours = sitk.ReadImage(str(out / ref.name))
        theirs = sitk.ReadImage(str(ref))
        r.same_geometry &= _geometry(ours) == _geometry(theirs)
        a, b = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs)
        r.agreement.append(float((a == b).mean()) if a.shape == b.shape else 0.0)
        r.cases += 1
    return r


def table(results: list[Result], engine: str = "fast") -> Table:
    t = Table(title=f"ENGINE={engine} vs nnUNetv2_predict on nnU-Net-trained folders (CPU, TTA off)",
              caption="nnU-Net s: its wall time when the zoo recorded its answer (other load than ours); "
                      "make bench-inference times both in one run")
    for col in ("kind", "engine", "cases", "lowest agreement", "geometry", "ours s", "nnU-Net s", "ratio"):
        t.add_column(col, justify="left" if col == "kind" else "right", no_wrap=col != "kind",
                     overflow="fold")
    for r in results:
        if r.rc != 0:
            t.add_row(r.kind, r.engine, "-", f"FAILED (exit {r.rc})", "-", f"{r.seconds:.1f}", f"{r.nnunet_seconds:.1f}", "-")
            continue
        low = min(r.agreement) if r.agreement else 0.0
        ratio = r.nnunet_seconds / r.seconds if r.seconds else 0.0
        t.add_row(r.kind, r.engine, str(r.cases), f"{100 * low:.3f} %", "same" if r.same_geometry else "DIFFERENT",
                  f"{r.seconds:.1f}", f"{r.nnunet_seconds:.1f}", f"{ratio:.2f}x")
    return t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoo", default=str(ZOO), help="the zoo folder (built there first when missing)")
    p.add_argument("--kind", action="append", choices=ALL_KINDS, help="only these kinds (repeatable; default all)")
    p.add_argument("--engine", default="fast", choices=("fast", "nnunet"),
                   help="fast (ours, >= 99.5 %% agreement) or nnunet (nnU-Net's predictor in our runner: 100 %%)")
    a = p.parse_args(argv)
    kinds = a.kind or ALL_KINDS
    zoo = with_extra_kinds(load_zoo(Path(a.zoo)), kinds)
    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs: names whole, not cut
    results = []
    with tempfile.TemporaryDirectory(prefix="amos-kinds-") as tmp:
        for kind in kinds:
            console.print(f"[bold]{kind}[/] ...")
            results.append(compare(zoo, kind, Path(tmp), a.engine))
            if results[-1].rc != 0:
                console.print(results[-1].log[-2000:], markup=False)
    console.print(table(results, a.engine))
    bad = [r for r in results if r.rc or not r.same_geometry or not r.agreement
           or min(r.agreement) < (1.0 if r.engine == "nnunet" else 0.995)]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
