"""What a model folder holds, from its file layout and JSON alone: the one description that the
engine, `make build` and verify-load share.

Why here and torch-free: the engine loads what this describes; `make build` refuses a folder the
engine could not load before anything is built; verify-load judges the weights inside a saved
image, where the folder is a list of paths in merged layers, not a directory. All three must
agree, and the host tools must not need torch to ask. So the description takes any set of
relative paths plus a JSON reader (`describe`), and `describe_dir` feeds it a real folder.

Formats (see weights/README.md):
- nnU-Net v2 results folder: dataset.json, plans.json, fold_*/checkpoint_final.pth (or the
  checkpoint chosen with CHECKPOINT, e.g. checkpoint_best.pth, which nnU-Net writes during every
  training); the folder itself or exactly one subfolder holding plans.json (one level of nesting).
  Folds run by default as nnU-Net chooses them: every fold_X but fold_all, and fold_all only
  when it is the only one (FOLDS=all asks for it);
- TorchScript: model.json (a manifest) naming its file, model.pt by default.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

CHECKPOINT = "checkpoint_final.pth"   # nnU-Net's default; CHECKPOINT= picks another
ALL_FOLD = "fold_all"                  # trained on every case; nnU-Net's auto-detection skips it
NNUNET_FILES = ("dataset.json", "plans.json")
FOLD_RE = re.compile(r"^fold_([^/]+)$")
HINT = ("copy your trained nnU-Net v2 model folder (dataset.json, plans.json, "
        "fold_N/checkpoint_final.pth) there, see README 'Your own model'")
TORCHSCRIPT_HINT = "see weights/README.md for the manifest format"


@dataclass
class ModelFolder:
    """One model folder as found: its format, where it sits, and what is missing."""
    kind: str                          # "nnunet", "torchscript" or "unknown"
    root: str = ""                     # the model's folder relative to the scanned one ("" = itself)
    folds: list[str] = field(default_factory=list)      # fold_X folders holding the checkpoint, sorted
    checkpoint: str = CHECKPOINT                        # the checkpoint file each fold must hold
    missing: list[str] = field(default_factory=list)    # required files absent, relative to root
    empty: list[str] = field(default_factory=list)      # required files present with 0 bytes
    problem: str = ""                  # why the folder cannot be used, when it is not a missing file
    dataset: dict | None = None        # dataset.json, when readable
    torchscript_file: str = ""         # the file model.json names

    @property
    def ok(self) -> bool:
        return self.kind != "unknown" and not (self.missing or self.empty or self.problem)

    def path(self, name: str) -> str:
        """A file of the model, relative to the scanned folder."""
        return posixpath.join(self.root, name) if self.root else name

    @property
    def labels(self) -> dict[str, int] | None:
        """dataset.json's labels (name -> value), when it has them."""
        labels = (self.dataset or {}).get("labels")
        return dict(labels) if isinstance(labels, dict) else None

    @property
    def default_folds(self) -> list[str]:
        """nnU-Net's choice when none is given: every fold_X but fold_all; fold_all when alone."""
        numbered = [f for f in self.folds if f != ALL_FOLD]
        return numbered or [f for f in self.folds if f == ALL_FOLD]

    def chosen_folds(self, wanted=None) -> tuple[list[str], list[str]]:
        """(fold folders to run, asked-for ones lacking the checkpoint) for FOLDS=`wanted`
        ('0', '2', 'all' ...; None: the default)."""
        if not wanted:
            return self.default_folds, []
        names = [f"fold_{w}" for w in wanted]
        return [n for n in names if n in self.folds], [n for n in names if n not in self.folds]

    def choice_problem(self, wanted=None) -> str:
        """'' when FOLDS=`wanted` can run here, else what is missing, in one line."""
        run, absent = self.chosen_folds(wanted)
        if absent:
            return f"FOLDS asks for {absent[0]} but {self.path(absent[0] + '/' + self.checkpoint)} is missing"
        if not run:
            return f"no fold_*/{self.checkpoint}"
        return ""

    def summary(self, wanted=None) -> str:
        if self.kind == "torchscript":
            return "TorchScript model"
        if self.kind == "nnunet":
            run, _ = self.chosen_folds(wanted)
            ckpt = "" if self.checkpoint == CHECKPOINT else f" ({self.checkpoint})"
            return f"nnU-Net v2 model, {len(run)} fold(s): {', '.join(run)}{ckpt}"
        return "no model"

    def refusal(self) -> str:
        """What is wrong and how to fix it, in one line (paths relative to the scanned folder)."""
        hint = TORCHSCRIPT_HINT if self.kind == "torchscript" else HINT
        if self.problem:
            return f"{self.problem}: {hint}"
        if self.missing:
            return f"missing {', '.join(self.path(m) for m in self.missing)}: {hint}"
        if self.empty:
            return f"empty {', '.join(self.path(m) for m in self.empty)}: {hint}"
        return ""


def describe(files: Iterable[str], read_json: Callable[[str], object],
             sizes: Callable[[str], int] | None = None, checkpoint: str = CHECKPOINT) -> ModelFolder:
    """Describe the model folder whose files (relative POSIX paths) are `files`.

    `read_json(rel)` returns a file's parsed JSON (raising ValueError/OSError when unreadable);
    `sizes(rel)` its size in bytes, so that an empty required file is refused too."""
    files = set(files)
    size = sizes or (lambda rel: 1)
    if "model.json" in files:
        m = ModelFolder("torchscript")
        try:
            manifest = read_json("model.json")
            name = manifest.get("file", "model.pt")
        except (ValueError, OSError, AttributeError):
            m.problem = "model.json is not a JSON object"
            return m
        m.torchscript_file = name
        for req in ("model.json", name):
            if req not in files:
                m.missing.append(req)
            elif size(req) == 0:
                m.empty.append(req)
        return m
    root = ""
    if not any(n in files for n in NNUNET_FILES):
        nested = sorted({f.split("/")[0] for f in files if f.count("/") == 1
                         and f.endswith("/plans.json")})
        if len(nested) == 1:
            root = nested[0]
        elif len(nested) > 1:
            return ModelFolder("unknown", problem=f"several model folders ({', '.join(nested)}); "
                                                  f"keep one, or point WEIGHTS at it")
        else:
            return ModelFolder("unknown", missing=[*NNUNET_FILES, f"fold_*/{checkpoint}"])
    m = ModelFolder("nnunet", root=root, checkpoint=checkpoint)
    inside = {f[len(root) + 1:] if root else f for f in files if not root or f.startswith(root + "/")}
    for req in NNUNET_FILES:
        if req not in inside:
            m.missing.append(req)
        elif size(m.path(req)) == 0:
            m.empty.append(req)
    folds = [f.split("/")[0] for f in inside
             if f.count("/") == 1 and f.endswith("/" + checkpoint) and FOLD_RE.match(f.split("/")[0])]
    m.folds = sorted(folds, key=lambda n: (len(n), n))
    if not m.folds:
        m.missing.append(f"fold_*/{checkpoint}")
    m.empty += [f"{f}/{checkpoint}" for f in m.folds if size(m.path(f"{f}/{checkpoint}")) == 0]
    if "dataset.json" in inside:
        try:
            data = read_json(m.path("dataset.json"))
            m.dataset = data if isinstance(data, dict) else None
        except (ValueError, OSError):
            m.dataset = None
    return m


def list_files(folder: Path, depth: int) -> list[str]:
    """The files of `folder` up to `depth` levels down, as relative POSIX paths."""
    out = []
    for level in range(1, depth + 1):
        out += [p.relative_to(folder).as_posix() for p in folder.glob("/".join(["*"] * level)) if p.is_file()]
    return out


def describe_dir(folder: Path, checkpoint: str = CHECKPOINT) -> ModelFolder:
    """Describe a model folder on disk (two levels deep at most: fold_X/file, sub/fold_X/file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return ModelFolder("unknown", problem=f"{folder} does not exist or is not a folder")
    return describe(list_files(folder, 3), lambda rel: json.loads((folder / rel).read_text()),
                    lambda rel: (folder / rel).stat().st_size, checkpoint)
