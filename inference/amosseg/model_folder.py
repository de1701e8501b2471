"""What a model folder holds, from its file layout and JSON alone: the one description that the
engine, `make build` and verify-load share.

Why here and torch-free: the engine loads what this describes; `make build` refuses a folder the
engine could not load before anything is built; verify-load judges the weights inside a saved
image, where the folder is a list of paths in merged layers, not a directory. All three must
agree, and the host tools must not need torch to ask. So the description takes any set of
relative paths plus a JSON reader (`describe`), and `describe_dir` feeds it a real folder.

Formats (see weights/README.md):
- nnU-Net v2 results folder: dataset.json, plans.json, fold_*/checkpoint_final.pth; the folder
  itself or exactly one subfolder holding plans.json (one level of nesting);
- TorchScript: model.json (a manifest) naming its file, model.pt by default.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

CHECKPOINT = "checkpoint_final.pth"
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
    folds: list[str] = field(default_factory=list)      # fold_X folders holding CHECKPOINT, sorted
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

    def summary(self) -> str:
        if self.kind == "torchscript":
            return "TorchScript model"
        if self.kind == "nnunet":
            return f"nnU-Net v2 model, {len(self.folds)} fold(s): {', '.join(self.folds)}"
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
             sizes: Callable[[str], int] | None = None) -> ModelFolder:
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
            return ModelFolder("unknown", missing=[*NNUNET_FILES, f"fold_*/{CHECKPOINT}"])
    m = ModelFolder("nnunet", root=root)
    inside = {f[len(root) + 1:] if root else f for f in files if not root or f.startswith(root + "/")}
    for req in NNUNET_FILES:
        if req not in inside:
            m.missing.append(req)
        elif size(m.path(req)) == 0:
            m.empty.append(req)
    folds = [f.split("/")[0] for f in inside
             if f.count("/") == 1 and f.endswith("/" + CHECKPOINT) and FOLD_RE.match(f.split("/")[0])]
    m.folds = sorted(folds, key=lambda n: (len(n), n))
    if not m.folds:
        m.missing.append(f"fold_*/{CHECKPOINT}")
    m.empty += [f"{f}/{CHECKPOINT}" for f in m.folds if size(m.path(f"{f}/{CHECKPOINT}")) == 0]
    if "dataset.json" in inside:
        try:
            data = read_json(m.path("dataset.json"))
            m.dataset = data if isinstance(data, dict) else None
        except (ValueError, OSError):
            m.dataset = None
    return m


def describe_dir(folder: Path) -> ModelFolder:
    """Describe a model folder on disk (two levels deep at most: fold_X/file, sub/fold_X/file)."""
    folder = Path(folder)
    if not folder.is_dir():
        return ModelFolder("unknown", problem=f"{folder} does not exist or is not a folder")
    files = []
    for depth in ("*", "*/*", "*/*/*"):
        files += [p.relative_to(folder).as_posix() for p in folder.glob(depth) if p.is_file()]
    return describe(files, lambda rel: json.loads((folder / rel).read_text()),
                    lambda rel: (folder / rel).stat().st_size)
