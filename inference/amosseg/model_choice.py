"""What to run from a folder nnU-Net wrote: one configuration, a cascade, or an ensemble, with the
postprocessing nnU-Net chose for it. Torch-free, from file names and JSON alone.

Why: users point WEIGHTS at whatever nnU-Net left them: a configuration folder
(`Trainer__Plans__config`), the whole `DatasetXXX_Name` folder (where
`nnUNetv2_find_best_configuration` wrote `inference_information.json`: the best configuration or
ensemble and where its postprocessing is), or that folder unpacked from the zip
`nnUNetv2_export_model_to_zip` writes. The engine, `make build` and verify-load must read the same
choice from it, and where nothing in the folder says what to run, one line must list what is
there and how to choose (our own small file, `amosseg_choice.json`).

`amosseg_choice.json` (written by `make build` into the image, or by a user):
    {"models": ["nnUNetTrainer__nnUNetPlans__3d_fullres", ...],   # configuration folders, ensembled
     "folds": [0, 1] | "all" | {"<folder>": [0, 1], ...} | null,  # optional: null = nnU-Net's choice
     "checkpoint": "checkpoint_final.pth",  # optional
     "postprocessing": "ensembles/.../postprocessing.json" | null}  # optional, relative to the file
A model whose configuration is a cascade stage (its plans name a `previous_stage`) brings that
stage's folder, found beside it (`Trainer__Plans__3d_lowres`).
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from .model_folder import CHECKPOINT, ModelFolder, describe, list_files
from .settings import parse_folds

CHOICE_FILE = "amosseg_choice.json"
INFO_FILE = "inference_information.json"      # written by nnUNetv2_find_best_configuration
CONFIG_DIR_RE = re.compile(r"^(?P<trainer>[^_/][^/]*?)__(?P<plans>[^/]+?)__(?P<configuration>[^/_][^/]*)$")
HOW_TO_CHOOSE = (f"point WEIGHTS (MODEL_DIR) at one of them, run nnUNetv2_find_best_configuration there, or write "
                 f"{CHOICE_FILE} beside them (see weights/README.md)")


@dataclass
class Member:
    """One trained configuration to run (an ensemble has several)."""
    folder: str                        # relative to the scanned folder ('' = itself)
    configuration: str | None          # None: only the checkpoint can tell
    description: ModelFolder
    folds: list[str] = field(default_factory=list)     # fold folders chosen to run
    previous_stage: "Member | None" = None             # a cascade's low-resolution stage

    def stages(self) -> list["Member"]:
        """The low-resolution stage first, then this one."""
        return (self.previous_stage.stages() if self.previous_stage else []) + [self]


@dataclass
class Choice:
    """What runs: members (ensembled when several), postprocessing file, and why this choice."""
    kind: str                          # "nnunet", "torchscript" or "unknown"
    members: list[Member] = field(default_factory=list)
    postprocessing: str | None = None  # relative path of postprocessing.json/.pkl, None: no postprocessing
    source: str = ""                   # where the choice was read, in words
    problem: str = ""                  # why nothing can run, one line
    torchscript: ModelFolder | None = None
    checkpoint: str = CHECKPOINT
    root: str = ""                     # choose_dir: the folder the members' paths are relative to

    @property
    def ok(self) -> bool:
        return not self.problem and self.kind != "unknown"

    def all_members(self) -> list[Member]:
        """Every configuration that runs, cascade stages included, each once."""
        seen, out = set(), []
        for m in self.members:
            for s in m.stages():
                if s.folder not in seen:
                    seen.add(s.folder)
                    out.append(s)
        return out

    @property
    def dataset(self) -> dict | None:
        """dataset.json of the first configuration, when readable (labels for validation)."""
        return self.members[0].description.dataset if self.members else None

    @property
    def kind_words(self) -> str:
        if self.kind == "torchscript":
            return "TorchScript model"
        if len(self.members) > 1:
            return f"ensemble of {len(self.members)} configurations"
        if self.members and self.members[0].previous_stage:
            return "cascade"
        return "single configuration" if self.members else "no model"

    def summary(self) -> str:
        """One line: kind, configurations with their folds, checkpoint, postprocessing."""
        if self.kind != "nnunet":
            return self.kind_words
        def one(m: Member) -> str:
            name = m.configuration or posixpath.basename(m.folder) or "model"
            return f"{name} ({len(m.folds)} fold(s): {', '.join(m.folds)})"
        ckpt = "" if self.checkpoint == CHECKPOINT else f", {self.checkpoint}"
        pp = f", postprocessing {self.postprocessing}" if self.postprocessing else ""
        runs = " + ".join(" -> ".join(one(s) for s in m.stages()) for m in self.members)
        return f"nnU-Net v2 {self.kind_words}: {runs}{ckpt}{pp}"


def parse_config_dir(name: str) -> tuple[str, str, str] | None:
    """'Trainer__Plans__config' -> (trainer, plans, configuration)."""
    m = CONFIG_DIR_RE.match(name)
    return (m["trainer"], m["plans"], m["configuration"]) if m else None


class _Files:
    """The scanned folder's files and JSON reader, with sub-folder views."""

    def __init__(self, files: Iterable[str], read_json, sizes):
        self.files = set(files)
        self.read_json = read_json
        self.sizes = sizes or (lambda rel: 1)

    def under(self, folder: str) -> set[str]:
        if not folder:
            return set(self.files)
        prefix = folder.rstrip("/") + "/"
        return {f[len(prefix):] for f in self.files if f.startswith(prefix)}

    def member_description(self, folder: str, checkpoint: str) -> ModelFolder:
        join = (lambda rel: posixpath.join(folder, rel)) if folder else (lambda rel: rel)
        return describe(self.under(folder), lambda rel: self.read_json(join(rel)),
                        lambda rel: self.sizes(join(rel)), checkpoint)

    def json(self, rel: str):
        try:
            return self.read_json(rel)
        except (ValueError, OSError, KeyError):
            return None

    def config_dirs(self, folder: str = "") -> list[str]:
        """Sub-folders of `folder` that hold plans.json (nnU-Net configuration folders), sorted."""
        return sorted({posixpath.join(folder, f.split("/")[0]) if folder else f.split("/")[0]
                       for f in self.under(folder) if f.count("/") == 1 and f.endswith("/plans.json")})


def _fold_names(folds) -> tuple[str, ...] | None:
    if folds is None or folds == [] or folds == ():
        return None
    if isinstance(folds, str):
        return parse_folds(folds)
    if isinstance(folds, int):
        folds = [folds]
    return tuple(str(f) for f in folds)


def _configuration_of(folder: str, name: str, plans) -> str | None:
    """The configuration a folder holds: from its nnU-Net name, else the only one in plans.json."""
    parsed = parse_config_dir(posixpath.basename(folder) or name)
    if parsed:
        return parsed[2]
    configs = (plans or {}).get("configurations") if isinstance(plans, dict) else None
    return next(iter(configs)) if isinstance(configs, dict) and len(configs) == 1 else None


def resolved_configuration(plans: dict, name: str) -> dict:
    """One configuration with nnU-Net's `inherits_from` chain resolved (KeyError when it is absent)."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise KeyError(name)
    conf = dict(configs[name])
    if "inherits_from" in conf:
        parent = resolved_configuration(plans, conf.pop("inherits_from"))
        parent.update(conf)
        conf = parent
    return conf


def fast_engine_problem(conf: dict) -> str | None:
    """What in a (resolved) configuration's preprocessing the fast engine does not reproduce, or None.
    Torch-free: make build reads it to choose nnU-Net's own predictor instead."""
    norm = (conf.get("normalization_schemes") or ["?"])[0]
    if norm not in ("CTNormalization", "ZScoreNormalization"):
        return f"normalization {norm} is not supported (CTNormalization, ZScoreNormalization are)"
    if any(conf.get("use_mask_for_norm", [False])):
        return "use_mask_for_norm=True is not supported"
    for key in ("resampling_fn_data", "resampling_fn_probabilities", "resampling_fn_seg"):
        if conf.get(key, "resample_data_or_seg_to_shape") != "resample_data_or_seg_to_shape":
            return f"{key}={conf[key]} is not supported"
    dk = conf.get("resampling_fn_data_kwargs", {})
    for key in ("resampling_fn_probabilities_kwargs", "resampling_fn_seg_kwargs"):
        if dk.get("force_separate_z") != conf.get(key, {}).get("force_separate_z"):
            return f"different force_separate_z for data and {key} is not supported"
    return None


def _previous_stage(plans, config: str | None) -> str | None:
    """The configuration a cascade stage follows (its plans' `previous_stage`), else None."""
    conf = ((plans if isinstance(plans, dict) else {}).get("configurations") or {}).get(config) if config else None
    return conf.get("previous_stage") if isinstance(conf, dict) else None


def _member(fs: _Files, folder: str, name: str, checkpoint: str, folds, problems: list, depth=0) -> Member:
    """One configuration folder; `folds`: FOLDS as names, or a dict of them per folder name (the choice file)."""
    wanted = _fold_names(folds.get(posixpath.basename(folder) or name)) if isinstance(folds, dict) else folds
    desc = fs.member_description(folder, checkpoint)
    plans = fs.json(posixpath.join(folder, "plans.json") if folder else "plans.json")
    config = _configuration_of(folder, name, plans)
    m = Member(folder, config, desc)
    where = folder or name or "the model folder"
    say = (lambda text: f"{folder}/: {text}") if folder else (lambda text: text)
    if desc.kind != "nnunet" or desc.missing or desc.problem:
        problems.append(say(desc.refusal()))
        return m
    problem = desc.choice_problem(wanted)
    if problem:
        problems.append(say(problem))
        return m
    m.folds = desc.chosen_folds(wanted)[0]
    empty = [e for e in desc.empty if "/" not in e or e.split("/")[0] in m.folds]  # an unused empty fold is no harm
    if empty:
        problems.append(say(f"empty {', '.join(desc.path(e) for e in empty)}: copy the files again"))
        return m
    previous = _previous_stage(plans, config)
    if previous and depth == 0:
        parsed = parse_config_dir(posixpath.basename(folder) or name)
        if not parsed:
            problems.append(f"{where}: configuration {config} is a cascade stage after {previous}, and the folder's "
                            f"name does not say its trainer and plans; keep nnU-Net's folder names")
            return m
        sibling = f"{parsed[0]}__{parsed[1]}__{previous}"
        rel = posixpath.join(posixpath.dirname(folder), sibling) if folder else posixpath.join("..", sibling)
        if rel.startswith("..") or not fs.under(rel):
            problems.append(f"{where}: configuration {config} needs its previous stage {sibling}/ beside it; "
                            f"point WEIGHTS at the folder holding both")
            return m
        m.previous_stage = _member(fs, rel, sibling, checkpoint, folds, problems, depth + 1)
    return m


def _resolve_relative(fs: _Files, path: str | None) -> str | None:
    """An absolute path from the training machine -> the longest tail of it that exists here."""
    if not path:
        return None
    parts = [p for p in path.replace("\\", "/").split("/") if p]
    for k in range(len(parts)):
        rel = "/".join(parts[k:])
        for cand in (rel, rel[:-4] + ".json" if rel.endswith(".pkl") else rel):
            if cand in fs.files:
                return cand
    return None


def _from_info(fs: _Files, base: str, checkpoint: str, wanted) -> Choice:
    info_path = posixpath.join(base, INFO_FILE) if base else INFO_FILE
    info = fs.json(info_path)
    try:
        best = info["best_model_or_ensemble"]
        selected = best["selected_model_or_models"]
        folders = [f"{s['trainer']}__{s['plans_identifier']}__{s['configuration']}" for s in selected]
    except (KeyError, TypeError):
        return Choice("unknown", problem=f"{info_path} is not what nnUNetv2_find_best_configuration writes; "
                                         f"run it again, or write {CHOICE_FILE}")
    folds = wanted or _fold_names(info.get("folds"))
    choice = _members(fs, [posixpath.join(base, f) if base else f for f in folders], checkpoint, folds,
                      f"{info_path} (nnUNetv2_find_best_configuration)")
    pp = best.get("postprocessing_file")
    rel = _resolve_relative(fs, pp)
    if pp and rel is None and choice.ok:
        choice.problem = (f"{info_path} names the postprocessing file {pp}, which is not in the folder; copy "
                          f"the folder it is in (crossval_results_folds_* or ensembles/) along")
    choice.postprocessing = rel
    return choice


def _from_choice_file(fs: _Files, base: str, checkpoint: str, wanted) -> Choice:
    path = posixpath.join(base, CHOICE_FILE) if base else CHOICE_FILE
    data = fs.json(path)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        return Choice("unknown", problem=f"{path} needs \"models\": a list of configuration folder names (see "
                                         f"weights/README.md)")
    checkpoint = data.get("checkpoint") or checkpoint
    given = data.get("folds")
    folds = wanted or (given if isinstance(given, dict) else _fold_names(given))
    choice = _members(fs, [posixpath.normpath(posixpath.join(base, m)) if base else posixpath.normpath(m)
                           for m in models], checkpoint, folds, path)
    pp = data.get("postprocessing")
    if pp:
        rel = posixpath.normpath(posixpath.join(base, pp)) if base else posixpath.normpath(pp)
        if rel not in fs.files and posixpath.splitext(rel)[0] + ".json" not in fs.files \
                and posixpath.splitext(rel)[0] + ".pkl" not in fs.files:
            choice.problem = choice.problem or f"{path} names postprocessing {pp}, which is not in the folder"
        choice.postprocessing = rel
    return choice


def _members(fs: _Files, folders: list[str], checkpoint: str, wanted, source: str) -> Choice:
    problems: list[str] = []
    members = []
    for folder in folders:
        if not fs.under(folder):
            problems.append(f"{folder}/ is missing; copy the trained configuration folder along")
            continue
        members.append(_member(fs, folder, posixpath.basename(folder), checkpoint, wanted, problems))
    return Choice("nnunet", members, source=source, problem=problems[0] if problems else "", checkpoint=checkpoint)


def choose(files: Iterable[str], read_json: Callable[[str], object], sizes: Callable[[str], int] | None = None,
           checkpoint: str = CHECKPOINT, folds=None, name: str = "") -> Choice:
    """What runs from a folder whose files (relative POSIX paths) are `files`; `name` is the folder's own
    name (tells a configuration folder's configuration); `folds` is FOLDS ('0', 'all' ...; None: nnU-Net's
    choice, or what inference_information.json / amosseg_choice.json name)."""
    fs = _Files(files, read_json, sizes)
    wanted = _fold_names(folds)
    if "model.json" in fs.files:
        ts = describe(fs.files, read_json, sizes, checkpoint)
        return Choice("torchscript", source="model.json", torchscript=ts,
                      problem="" if ts.ok else ts.refusal())
    v1 = sorted(f for f in fs.files if posixpath.basename(f) == "plans.pkl" or f.endswith(".model"))
    if v1 and not any(posixpath.basename(f) == "plans.json" for f in fs.files):
        return Choice("unknown", problem=f"an nnU-Net v1 model ({v1[0]}); this engine runs nnU-Net v2 folders: "
                                         f"convert the dataset with nnUNetv2_convert_old_nnUNet_dataset and train "
                                         f"it with nnU-Net v2")
    base = ""
    # a zip from nnUNetv2_export_model_to_zip unpacks to one DatasetXXX_Name/ folder: look inside it
    tops = {f.split("/")[0] for f in fs.files}
    if len(tops) == 1 and not any("/" not in f for f in fs.files) and not fs.config_dirs() \
            and "plans.json" not in fs.files:
        base = next(iter(tops))
    inside = fs.under(base)
    if CHOICE_FILE in inside:
        return _from_choice_file(fs, base, checkpoint, wanted)
    if "plans.json" in inside or "dataset.json" in inside:
        return _members(fs, [base], checkpoint, wanted, "the configuration folder itself") \
            if base else _single_root(fs, name, checkpoint, wanted)
    if INFO_FILE in inside:
        return _from_info(fs, base, checkpoint, wanted)
    configs = fs.config_dirs(base)
    if len(configs) == 1:
        return _members(fs, configs, checkpoint, wanted, f"the one configuration folder {configs[0]}/")
    if configs:
        # a cascade pair alone (its low-res stage beside it) still says what to run: the cascade
        cascades = _cascade_tops(fs, configs)
        if len(cascades) == 1 and len(configs) == 2:
            return _members(fs, cascades, checkpoint, wanted, f"the cascade {cascades[0]}/ and its previous stage")
        names = ", ".join(posixpath.basename(c) for c in configs)
        return Choice("unknown", problem=f"several configurations ({names}) and no {INFO_FILE} saying which to run; "
                                         f"{HOW_TO_CHOOSE}")
    missing = describe(inside, lambda rel: fs.read_json(posixpath.join(base, rel) if base else rel), None, checkpoint)
    return Choice("unknown", problem=missing.refusal() or "no model found")


def _single_root(fs: _Files, name: str, checkpoint: str, wanted) -> Choice:
    """The scanned folder is a configuration folder (its siblings are out of sight)."""
    problems: list[str] = []
    m = _member(fs, "", name, checkpoint, wanted, problems)
    return Choice("nnunet", [m], source="the configuration folder itself", checkpoint=checkpoint,
                  problem=problems[0] if problems else "")


def _cascade_tops(fs: _Files, configs: list[str]) -> list[str]:
    out = []
    for c in configs:
        plans = fs.json(posixpath.join(c, "plans.json"))
        if _previous_stage(plans, _configuration_of(c, posixpath.basename(c), plans)):
            out.append(c)
    return out


def choose_dir(folder, checkpoint: str = CHECKPOINT, folds=None) -> Choice:
    """`choose` on a folder on disk. A cascade configuration folder is read with its parent, where its
    previous stage sits beside it."""
    import json
    from pathlib import Path

    folder = Path(folder)
    if not folder.is_dir():
        return Choice("unknown", problem=f"{folder} does not exist or is not a folder")
    parsed = parse_config_dir(folder.name)
    if parsed and (folder / "plans.json").is_file():
        try:
            previous = _previous_stage(json.loads((folder / "plans.json").read_text()), parsed[2])
        except (ValueError, OSError):
            previous = None
        if previous:
            parent = folder.parent
            files = [f"{folder.name}/{f}" for f in list_files(folder, 2)]
            sibling = parent / f"{parsed[0]}__{parsed[1]}__{previous}"
            if sibling.is_dir():
                files += [f"{sibling.name}/{f}" for f in list_files(sibling, 2)]
            fs = _Files(files, lambda rel: json.loads((parent / rel).read_text()),
                        lambda rel: (parent / rel).stat().st_size)
            choice = _members(fs, [folder.name], checkpoint, _fold_names(folds),
                              f"the cascade {folder.name}/ and its previous stage beside it")
            choice.root = str(parent)
            return choice
    choice = choose(list_files(folder, 4), lambda rel: json.loads((folder / rel).read_text()),
                    lambda rel: (folder / rel).stat().st_size, checkpoint, folds, folder.name)
    choice.root = str(folder)
    return choice
