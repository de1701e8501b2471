"""Which engine the image runs (fast or nnunet), and why, read from WEIGHTS and TRAINER_CODE alone.

Why: the fast engine builds the network from the plans and runs nnU-Net's inference itself; that is
nnU-Net's answer only when the trainer builds the plans' network and infers as nnU-Net does. Where
that cannot be known to hold (a network class outside dynamic-network-architectures, a trainer that
overrides `build_network_architecture` or inference), the image carries nnU-Net's own predictor
instead: never a silently different answer. Torch-free: plans, folder names and the trainer code's
syntax tree (never imported or run on the host).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

ENGINES = ("auto", "fast", "nnunet")
DNA_PREFIX = "dynamic_network_architectures."
# methods whose override changes what the network is or how it infers
OVERRIDES = ("build_network_architecture", "set_deep_supervision_enabled", "predict_sliding_window_return_logits",
             "_internal_maybe_mirror_and_predict")
# nnU-Net's own trainers that build another network than the plans say (nnunetv2/training/nnUNetTrainer/
# variants/network_architecture, primus): recognised by name, their code is nnU-Net's
NNUNET_OWN_NETWORK_TRAINERS = re.compile(r"^nnUNetTrainerBN\w*$|^nnUNet_?\w*Primus\w*$|^_Primus\w*$")
# modules whose import needs timm (which imports torchvision): Primus networks and their trainers
TIMM_MODULE = re.compile(r"^(timm|torchvision)(\.|$)|\.primus(\.|$)")


class EngineChoiceError(ValueError):
    """ENGINE or TRAINER_CODE cannot be used as given; one line naming the fix."""


@dataclass
class EngineChoice:
    engine: str                 # "fast" or "nnunet"
    reason: str                 # one line, shown by make build
    trainer_files: list[Path]   # TRAINER_CODE's .py files (copied into the image for ENGINE=nnunet)
    networks: list[str] = field(default_factory=list)  # "configuration: trainer, network class" per member
    # nnU-Net's own trainers (by class name) whose module the image copies from its nnunetv2 to the top of
    # nnunetv2/training/nnUNetTrainer/: there nnU-Net's lookup finds them before it imports primus (timm)
    own_trainers: list[str] = field(default_factory=list)
    # why the image needs timm and the torchvision of its torch (Primus), or "" when it does not
    needs_timm: str = ""


def trainer_files(trainer_code: str) -> list[Path]:
    """The .py files of TRAINER_CODE (a file, or a folder of them; empty: none)."""
    if not trainer_code:
        return []
    path = Path(trainer_code)
    if path.is_file() and path.suffix == ".py":
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.glob("*.py") if p.is_file())
        if files:
            return files
    raise EngineChoiceError(f"TRAINER_CODE={trainer_code} is not a .py file or a folder holding .py files; point it "
                            "at the module that defines your nnU-Net trainer class")


def _parse(f: Path) -> ast.Module:
    try:
        return ast.parse(f.read_text(encoding="utf-8", errors="replace"), filename=str(f))
    except SyntaxError as exc:
        raise EngineChoiceError(f"TRAINER_CODE {f}: not valid Python (line {exc.lineno}); fix it") from None


def _overrides(files: list[Path], trainer: str) -> tuple[bool, list[str]]:
    """(trainer class found, methods from OVERRIDES it or a base class in the same files defines)."""
    classes: dict[str, ast.ClassDef] = {}
    for f in files:
        tree = _parse(f)
        classes.update({n.name: n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)})
    found, methods, todo, seen = trainer in classes, [], [trainer], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        node = classes[name]
        methods += [b.name for b in node.body
                    if isinstance(b, (ast.FunctionDef, ast.AsyncFunctionDef)) and b.name in OVERRIDES]
        todo += [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
    return found, sorted(set(methods))


def _imported_modules(files: list[Path]) -> set[str]:
    """Every module TRAINER_CODE imports (its syntax tree; relative imports as written)."""
    names: set[str] = set()
    for f in files:
        for node in ast.walk(_parse(f)):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
    return names


def timm_reason(members: list[tuple], files: list[Path]) -> str:
    """Why the image needs timm and torchvision (a Primus trainer or network, TRAINER_CODE importing them), or ""."""
    for trainer, network, *_ in members:
        if "primus" in trainer.lower() and NNUNET_OWN_NETWORK_TRAINERS.match(trainer):
            return f"nnU-Net's {trainer} builds a Primus network"
        if network and TIMM_MODULE.search(network):
            return f"network {network} is a Primus network"
    imported = sorted(m for m in _imported_modules(files) if TIMM_MODULE.search(m))
    return f"TRAINER_CODE imports {', '.join(imported)}" if imported else ""


def choose(requested: str, members: list[tuple], trainer_code: str = "") -> EngineChoice:
    """members: (trainer class name, plans' network_class_name or None[, what of the preprocessing the fast
    engine does not reproduce or None]) of every configuration that runs. requested: ENGINE (empty = auto).
    An ENGINE=nnunet choice says whether the image needs timm and torchvision (needs_timm)."""
    requested = (requested or "auto").strip().lower()
    if requested not in ENGINES:
        raise EngineChoiceError(f"ENGINE={requested!r} is not an engine; set ENGINE=auto (default), fast or nnunet")
    files = trainer_files(trainer_code)
    members = [(*m, None)[:3] for m in members]
    choice = _choose(requested, members, files, trainer_code)
    if choice.engine == "nnunet":
        choice.needs_timm = timm_reason(members, files)
    return choice


def _choose(requested: str, members: list[tuple], files: list[Path], trainer_code: str) -> EngineChoice:
    if requested != "auto":
        why = "nnU-Net's own predictor" if requested == "nnunet" else "our engine"
        return EngineChoice(requested, f"ENGINE={requested} set by hand ({why})", files)
    timm = timm_reason(members, files)
    if timm:
        return EngineChoice("nnunet", f"{timm}: nnU-Net's own predictor runs it, with timm and the torchvision "
                                      "of the image's torch", files)
    for trainer, network, problem in members:
        if problem:
            return EngineChoice("nnunet", f"the fast engine cannot reproduce it ({problem}): nnU-Net's own "
                                          "predictor runs it", files)
        if network and not network.startswith(DNA_PREFIX):
            return EngineChoice("nnunet", f"network {network} is not a dynamic-network-architectures class: "
                                          "nnU-Net's own predictor builds it", files)
        if NNUNET_OWN_NETWORK_TRAINERS.match(trainer):
            if files and _overrides(files, trainer)[0]:
                return EngineChoice("nnunet", f"nnU-Net's {trainer} builds its own network, not the plans': "
                                              "nnU-Net's own predictor runs it (its module from TRAINER_CODE)", files)
            return EngineChoice("nnunet", f"nnU-Net's {trainer} builds its own network, not the plans': nnU-Net's "
                                          "own predictor runs it (its module, from nnU-Net itself, copied where "
                                          "nnU-Net's lookup finds it before the primus trainers, which need timm)",
                                files, own_trainers=[trainer])
        if files:
            found, methods = _overrides(files, trainer)
            if methods:
                return EngineChoice("nnunet", f"TRAINER_CODE's {trainer} overrides {', '.join(methods)}: "
                                              "nnU-Net's own predictor runs it as trained", files)
    trainers = sorted({m[0] for m in members})
    if files and not any(_overrides(files, t)[0] for t in trainers):
        raise EngineChoiceError(f"TRAINER_CODE={trainer_code} defines none of the trainers that run "
                                f"({', '.join(trainers) or 'none'}); point it at the module that defines yours")
    if files:
        return EngineChoice("fast", "TRAINER_CODE's trainer builds the plans' network and infers as nnU-Net does: "
                                    "the fast engine gives nnU-Net's answer (ENGINE=nnunet to run nnU-Net's own)",
                            files)
    return EngineChoice("fast", "the plans' network and nnU-Net's inference: the fast engine gives nnU-Net's answer",
                        files)
