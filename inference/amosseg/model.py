"""Load a trained model folder: nnU-Net v2 results folder, or TorchScript + JSON manifest.

Why: most AMOS22 teams train with nnU-Net; they should drop in their results folder unchanged and
never need nnunetv2 (and its dependencies) inside the image. Anything we cannot honour exactly is
refused with a clear message rather than silently ignored.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from .model_folder import CHECKPOINT, NNUNET_FILES, ModelFolder, describe_dir
from .network import UnsupportedModel, build_network
from .settings import parse_folds


@dataclass
class Model:
    networks: list  # one torch.nn.Module per fold (ensembled by averaging logits)
    labels: dict  # name -> id
    patch_size: tuple  # (z, y, x) in the transposed order
    spacing: tuple  # target spacing, transposed order
    normalization: str  # "CTNormalization" or "ZScoreNormalization"
    intensity: dict  # foreground properties for CT normalisation
    transpose_forward: tuple
    transpose_backward: tuple
    mirror_axes: tuple  # spatial axes usable for mirroring TTA
    data_order: int = 3  # resampling orders (nnU-Net plans)
    data_order_z: int = 0
    prob_order: int = 1
    prob_order_z: int = 0
    force_separate_z: object = None
    postprocessing: list = field(default_factory=list)  # [(labels tuple)] keep-largest-component steps
    description: str = ""

    @property
    def num_classes(self) -> int:
        return max(self.labels.values()) + 1


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UnsupportedModel(f"model folder is missing {path.name} ({path}); copy the whole nnU-Net results folder") from None
    except json.JSONDecodeError as exc:
        raise UnsupportedModel(f"{path} is not valid JSON ({exc})") from None


def _configuration(plans: dict, name: str) -> dict:
    """Resolve nnU-Net's `inherits_from` chain into one configuration dict."""
    configs = plans.get("configurations", {})
    if name not in configs:
        raise UnsupportedModel(f"configuration {name!r} not in plans.json (has {sorted(configs)})")
    conf = dict(configs[name])
    if "inherits_from" in conf:
        parent = _configuration(plans, conf.pop("inherits_from"))
        parent.update(conf)
        conf = parent
    return conf


def _labels(dataset: dict) -> dict:
    labels = dataset.get("labels") or {}
    if any(isinstance(v, (list, tuple)) for v in labels.values()) or "regions_class_order" in dataset:
        raise UnsupportedModel("region-based nnU-Net models are not supported; train with plain labels")
    if "ignore" in labels:
        labels = {k: v for k, v in labels.items() if k != "ignore"}
    return {str(k): int(v) for k, v in labels.items()}


def _postprocessing(folder: Path) -> list:
    path = folder / "postprocessing.json"
    if not path.is_file():
        return []
    pp = _load_json(path)
    steps = []
    for fn, kwargs in zip(pp.get("postprocessing_fns", []), pp.get("postprocessing_kwargs", [])):
        if fn != "remove_all_but_largest_component_from_segmentation":
            raise UnsupportedModel(f"postprocessing.json names {fn}, which this engine does not implement")
        lr = kwargs.get("labels_or_regions")
        steps.append(tuple(int(v) for v in (lr if isinstance(lr, (list, tuple)) else [lr])))
    return steps


def _fold_dirs(folder: Path, desc: ModelFolder, folds: Sequence[str] | None) -> list[Path]:
    """The fold folders to ensemble: those FOLDS names (each must hold the checkpoint), else
    nnU-Net's default choice (model_folder.ModelFolder.default_folds)."""
    folds = parse_folds(folds) if isinstance(folds, str) else folds
    problem = desc.choice_problem(folds)
    if problem:  # its paths are relative to the folder described, the parent of a nested model
        raise UnsupportedModel(f"{problem} in {folder.parent if desc.root else folder}; copy the "
                               f"trained folds into the model folder, or choose other FOLDS / CHECKPOINT")
    return [folder / name for name in desc.chosen_folds(folds)[0]]


def load_nnunet(folder: Path, folds: Sequence[str] | None = None, desc: ModelFolder | None = None) -> Model:
    """An nnU-Net v2 results folder (`desc`: its description, made here when not given)."""
    desc = desc or describe_dir(folder)
    dataset = _load_json(folder / "dataset.json")
    plans = _load_json(folder / "plans.json")
    fold_dirs = _fold_dirs(folder, desc, folds)
    empty = [e for e in desc.empty if e in NNUNET_FILES or (folder / e).parent in fold_dirs]
    if empty:
        raise UnsupportedModel(f"empty {', '.join(empty)} in {folder}; copy the files again")
    labels = _labels(dataset)
    networks, config_name, mirror_axes, arch = [], None, None, None
    for fold in fold_dirs:
        ckpt = torch.load(fold / desc.checkpoint, map_location="cpu", weights_only=False)
        name = ckpt.get("init_args", {}).get("configuration")
        if name is None:
            raise UnsupportedModel(f"{fold}/{desc.checkpoint} has no init_args.configuration; not an nnU-Net v2 checkpoint")
        if config_name not in (None, name):
            raise UnsupportedModel(f"folds use several configurations ({config_name}, {name}); keep one")
        config_name = name
        if arch is None:
            conf = _configuration(plans, name)
            if conf.get("previous_stage"):
                raise UnsupportedModel(f"configuration {name} is a cascade stage; cascades are not supported")
            if "architecture" not in conf:
                raise UnsupportedModel("plans.json has no 'architecture' entry (nnU-Net < 2.4); re-plan with nnU-Net >= 2.4")
            arch = conf["architecture"]
            mirror_axes = ckpt.get("inference_allowed_mirroring_axes")
        n_in = len(dataset.get("channel_names", dataset.get("modality", {"0": "CT"})))
        net = build_network(arch, n_in, max(labels.values()) + 1)
        net.load_state_dict(ckpt["network_weights"])
        networks.append(net.eval())
    if n_in != 1:
        raise UnsupportedModel(f"model expects {n_in} input channels; AMOS22 task 1 gives one CT channel")
    norm = conf["normalization_schemes"][0]
    if norm not in ("CTNormalization", "ZScoreNormalization"):
        raise UnsupportedModel(f"normalization {norm} is not supported (CTNormalization, ZScoreNormalization are)")
    if any(conf.get("use_mask_for_norm", [False])):
        raise UnsupportedModel("use_mask_for_norm=True is not supported")
    dk = conf.get("resampling_fn_data_kwargs", {})
    pk = conf.get("resampling_fn_probabilities_kwargs", {})
    for key in ("resampling_fn_data", "resampling_fn_probabilities"):
        if conf.get(key, "resample_data_or_seg_to_shape") != "resample_data_or_seg_to_shape":
            raise UnsupportedModel(f"{key}={conf[key]} is not supported")
    if dk.get("force_separate_z") != pk.get("force_separate_z"):
        raise UnsupportedModel("different force_separate_z for data and probabilities is not supported")
    tf = tuple(plans.get("transpose_forward", (0, 1, 2)))
    return Model(
        networks=networks, labels=labels, patch_size=tuple(conf["patch_size"]), spacing=tuple(conf["spacing"]),
        normalization=norm, intensity=plans.get("foreground_intensity_properties_per_channel", {}).get("0", {}),
        transpose_forward=tf, transpose_backward=tuple(plans.get("transpose_backward", (0, 1, 2))),
        mirror_axes=tuple(mirror_axes) if mirror_axes is not None else (0, 1, 2),
        data_order=dk.get("order", 3), data_order_z=dk.get("order_z", 0),
        prob_order=pk.get("order", 1), prob_order_z=pk.get("order_z", 0),
        force_separate_z=dk.get("force_separate_z"), postprocessing=_postprocessing(folder),
        description=f"nnU-Net v2 {config_name}, {len(networks)} fold(s), {arch['network_class_name'].rsplit('.', 1)[-1]}",
    )


def load_torchscript(folder: Path) -> Model:
    """`model.pt` (TorchScript, input (N,1,z,y,x) -> logits) with `model.json` describing it."""
    man = _load_json(folder / "model.json")
    for key in ("patch_size", "spacing", "labels", "normalization"):
        if key not in man:
            raise UnsupportedModel(f"model.json lacks {key!r}; see weights/README.md for the manifest format")
    net = torch.jit.load(str(folder / man.get("file", "model.pt")), map_location="cpu").eval()
    norm = man["normalization"]
    scheme = {"ct": "CTNormalization", "zscore": "ZScoreNormalization"}.get(norm.get("scheme"))
    if scheme is None:
        raise UnsupportedModel(f"model.json normalization.scheme must be 'ct' or 'zscore', got {norm.get('scheme')!r}")
    return Model(
        networks=[net], labels={str(k): int(v) for k, v in man["labels"].items()},
        patch_size=tuple(man["patch_size"]), spacing=tuple(man["spacing"]), normalization=scheme,
        intensity={k: norm[k] for k in ("percentile_00_5", "percentile_99_5", "mean", "std") if k in norm},
        transpose_forward=(0, 1, 2), transpose_backward=(0, 1, 2), mirror_axes=tuple(man.get("mirror_axes", [])),
        data_order=int(man.get("order", 3)), prob_order=1, description="TorchScript model",
    )


def load_model(folder: Path, folds: Sequence[str] | None = None, checkpoint: str = CHECKPOINT) -> Model:
    """Load the folder in the format its description (model_folder.describe_dir) finds."""
    if not folder.is_dir():
        raise UnsupportedModel(f"model folder {folder} does not exist; put your model in weights/ or set MODEL_DIR")
    desc = describe_dir(folder, checkpoint)
    if desc.kind == "torchscript":
        if desc.problem or desc.missing or desc.empty:
            _load_json(folder / "model.json")  # invalid JSON: say where it breaks
            raise UnsupportedModel(f"{folder}: {desc.refusal()}")
        return load_torchscript(folder)
    if desc.kind == "nnunet":
        return load_nnunet(folder / desc.root if desc.root else folder, folds, desc)  # paths in desc: from root
    if desc.problem:
        raise UnsupportedModel(f"{folder}: {desc.problem.split(';')[0]}; keep one, or set MODEL_DIR to it")
    raise UnsupportedModel(f"{folder} holds neither plans.json + dataset.json + fold_*/ nor model.json + model.pt")
