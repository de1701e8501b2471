"""Which folders to read and write, and which entries are cases.

Why: the organisers' text says /input and /output, their command mounts /workspace/input and
/workspace/output; local runs use ./input. We pick the first that holds cases and say why.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CANDIDATES = (("/workspace/input", "/workspace/output"), ("/input", "/output"), ("./input", "./output"))
SUFFIX = ".nii.gz"


class FolderError(RuntimeError):
    """The run cannot start: the message says which folder and what to do."""


@dataclass
class Folders:
    input: Path
    output: Path
    reason: str


def is_case(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIX) and not path.name.startswith(".partial-") and path.is_file()


def _has_cases(folder: Path) -> bool:
    try:
        return any(is_case(p) for p in folder.iterdir())
    except OSError:
        return False


def resolve(input_dir: Path | None = None, output_dir: Path | None = None) -> Folders:
    """INPUT_DIR/OUTPUT_DIR if set, else the first candidate pair holding a case, else the first existing."""
    if input_dir is not None:
        return Folders(Path(input_dir), Path(output_dir or Path(input_dir).parent / "output"), "INPUT_DIR is set")
    pairs = [(Path(i), Path(output_dir or o)) for i, o in CANDIDATES]
    for inp, out in pairs:
        if inp.is_dir() and _has_cases(inp):
            return Folders(inp, out, f"first of {', '.join(i for i, _ in CANDIDATES)} holding a *{SUFFIX}")
    for inp, out in pairs:
        if inp.is_dir():
            return Folders(inp, out, "no folder holds a case; first that exists")
    raise FolderError(f"no input folder: none of {', '.join(i for i, _ in CANDIDATES)} exists; "
                      "mount your cases at /workspace/input or set INPUT_DIR")


def prepare_output(folders: Folders) -> list[Path]:
    """Create the output folder, prove it is writable, remove stale partial files; returns removed."""
    if not folders.input.is_dir():
        raise FolderError(f"input folder {folders.input} does not exist or is not a folder; mount it or set INPUT_DIR")
    try:
        folders.output.mkdir(parents=True, exist_ok=True)
        probe = folders.output / f".partial-{os.getpid()}-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FolderError(f"output folder {folders.output} is not writable ({exc.strerror}); "
                          "mount it read-write or set OUTPUT_DIR") from exc
    stale = [p for p in folders.output.iterdir() if p.name.startswith(".partial-")]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def list_entries(folder: Path) -> tuple[list[Path], list[Path]]:
    """(cases sorted by name, other entries to skip)."""
    cases, skipped = [], []
    for p in sorted(folder.iterdir(), key=lambda p: p.name):
        (cases if is_case(p) else skipped).append(p)
    return cases, skipped
