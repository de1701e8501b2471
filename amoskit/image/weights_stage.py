"""What of WEIGHTS goes into the image: only the files inference reads, laid out so the engine finds
what to run without guessing.

Why: nnU-Net's folders hold far more than a submission needs (every fold's validation
predictions, logs, progress plots, both checkpoints, the other configurations), and a cascade's
first stage or an ensemble's members sit in sibling folders. The engine's own choice
(`amosseg.model_choice`, torch-free) says which configurations, folds, checkpoint and
postprocessing run; this module copies exactly those:
- one configuration without postprocessing: flat, as before (`weights/plans.json`,
  `weights/dataset.json`, `weights/fold_X/<checkpoint>`);
- anything else (cascade, ensemble, postprocessing, a DatasetXXX folder, the exported zip):
  `weights/amosseg_choice.json` naming `weights/<Trainer__Plans__config>/...` and
  `weights/postprocessing.json`.
WEIGHTS may be the zip `nnUNetv2_export_model_to_zip` writes; it is read in place and only the
chosen members are extracted.
"""
from __future__ import annotations

import json
import os
import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from amosseg import model_choice, model_folder


class WeightsError(Exception):
    """WEIGHTS cannot run as given: one line naming the folder, the problem and the fix."""


@dataclass
class Source:
    """WEIGHTS as files: a folder on disk or a zip, read the same way."""
    path: Path
    files: dict[str, int]                 # relative path -> bytes
    zip: zipfile.ZipFile | None = None

    def read_json(self, rel: str):
        if self.zip is not None:
            return json.loads(self.zip.read(rel))
        return json.loads((self.path / rel).read_text())

    def materialise(self, rel: str, workdir: Path) -> Path:
        """A host path holding the file (extracted from a zip into workdir)."""
        if self.zip is None:
            return self.path / rel
        out = workdir / "weights-from-zip" / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(self.zip.read(rel))
        return out


def walk(root: Path):
    """os.walk that follows links to folders (a model folder of links ships the real checkpoints, as a
    user who links the configurations of an ensemble side by side expects) but never a loop: a folder
    that is one of its own ancestors is not entered (two links to one folder are both walked)."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        real = os.path.realpath(here)
        if any(os.path.realpath(root / a) == real for a in here.relative_to(root).parents):
            dirnames[:] = []
            continue
        yield dirpath, dirnames, filenames


def open_source(weights: Path) -> Source:
    if weights.is_file() and zipfile.is_zipfile(weights):
        z = zipfile.ZipFile(weights)
        files = {i.filename: i.file_size for i in z.infolist() if not i.is_dir()}
        return Source(weights, files, z)
    if not weights.is_dir():
        raise WeightsError(f"{weights} does not exist: {model_folder.HINT}")
    files = {}
    for dirpath, _, filenames in walk(weights):
        for name in filenames:
            p = Path(dirpath) / name
            if p.is_file():
                files[p.relative_to(weights).as_posix()] = p.stat().st_size
    return Source(weights, files)


def choose(src: Source, folds: str = "", checkpoint: str = "") -> model_choice.Choice:
    """The engine's choice for WEIGHTS (a cascade configuration folder is read with its parent)."""
    if src.zip is None and model_choice.parse_config_dir(src.path.name):
        choice = model_choice.choose_dir(src.path, checkpoint or model_folder.CHECKPOINT, folds or None)
        if choice.root and Path(choice.root) != src.path:  # the cascade's parent: stage from there
            src.path, src.files = Path(choice.root), open_source(Path(choice.root)).files
        return choice
    return model_choice.choose(src.files, src.read_json, src.files.get, checkpoint or model_folder.CHECKPOINT,
                               folds or None, src.path.name if src.zip is None else "")


@dataclass
class Staged:
    """The files that go to weights/ in the image, and what was left out."""
    choice: model_choice.Choice
    files: list[tuple[str, str | bytes]] = field(default_factory=list)  # (source rel path or content, arcname)
    before_bytes: int = 0
    left_out: dict[str, int] = field(default_factory=dict)              # kind of file -> bytes not shipped

    def after_bytes(self, src: Source) -> int:
        return sum(src.files[s] if isinstance(s, str) else len(s) for s, _ in self.files)


def _left_out_kind(rel: str) -> str:
    name = posixpath.basename(rel)
    if "/validation/" in f"/{rel}" or name.startswith("crossval_results") or "/crossval_results" in rel:
        return "validation predictions"
    if name.endswith(".pth") or name.endswith(".model"):
        return "checkpoints not chosen"
    if name.endswith((".txt", ".png", ".pdf", ".log")) or name == "debug.json":
        return "logs and plots"
    return "other files"


def stage(src: Source, choice: model_choice.Choice) -> Staged:
    """Exactly what inference reads from `choice` (which must be ok)."""
    st = Staged(choice, before_bytes=sum(src.files.values()))
    if choice.kind == "torchscript":
        st.files = [(rel, posixpath.join("weights", rel)) for rel in sorted(src.files)]
        return st
    members = choice.all_members()
    flat = len(members) == 1 and not choice.postprocessing
    names = {}
    for m in members:
        arc = "weights" if flat else posixpath.join("weights", _member_name(m))
        names[m.folder] = posixpath.basename(arc)
        for rel in ["plans.json", "dataset.json"] + [f"{f}/{choice.checkpoint}" for f in m.folds]:
            st.files.append((posixpath.join(m.folder, rel) if m.folder else rel, posixpath.join(arc, rel)))
    if not flat:
        pp = None
        if choice.postprocessing:  # nnU-Net writes both; the engine reads the JSON first
            stem = posixpath.splitext(choice.postprocessing)[0]
            for ext in (".pkl", ".json"):
                if stem + ext in src.files:
                    st.files.append((stem + ext, f"weights/postprocessing{ext}"))
                    pp = f"postprocessing{ext}"
        doc = {"models": [names[m.folder] for m in choice.members],
               "folds": {names[m.folder]: [f.removeprefix("fold_") for f in m.folds] for m in members},
               "checkpoint": choice.checkpoint, "postprocessing": pp,
               "chosen_from": choice.source}
        st.files.append((json.dumps(doc, indent=2).encode() + b"\n", f"weights/{model_choice.CHOICE_FILE}"))
    shipped = {s for s, _ in st.files if isinstance(s, str)}
    for rel, size in src.files.items():
        if rel not in shipped:
            kind = _left_out_kind(rel)
            st.left_out[kind] = st.left_out.get(kind, 0) + size
    return st


def _member_name(m: model_choice.Member) -> str:
    base = posixpath.basename(m.folder)
    return base if base and model_choice.parse_config_dir(base) else f"model__{m.configuration or 'unknown'}"
