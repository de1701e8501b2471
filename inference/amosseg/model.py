"""Load a trained model: any nnU-Net v2 results folder (model_choice says what runs), its exported zip,
or TorchScript + JSON manifest.

Why: most AMOS22 teams train with nnU-Net; they should drop in their results folder unchanged and
never need nnunetv2 (and its dependencies) inside the image. Anything we cannot honour exactly is
refused with a clear message rather than silently ignored.
"""
from __future__ import annotations

import atexit
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from . import postprocessing
from .model_choice import Choice, choose_dir, fast_engine_problem, resolved_configuration
from .model_folder import CHECKPOINT
from .network import UnsupportedModel, build_network
from .settings import parse_folds


@dataclass
class Model:
    """One trained configuration: its folds' networks (their logits averaged) and nnU-Net's rules for it."""
    networks: list  # one torch.nn.Module per fold (ensembled by averaging logits)
    labels: dict  # name -> id (a region-based model: name -> tuple of ids)
    patch_size: tuple  # (z, y, x) in the transposed order; two entries for a 2d configuration
    spacing: tuple  # target spacing, transposed order (two entries for 2d: the slice axis keeps its own)
    normalization: str  # "CTNormalization" or "ZScoreNormalization"
    intensity: dict  # foreground properties for CT normalisation
    transpose_forward: tuple
    transpose_backward: tuple
    mirror_axes: tuple  # spatial axes usable for mirroring TTA (those the checkpoint saved)
    data_order: int = 3  # resampling orders (nnU-Net plans)
    data_order_z: int = 0
    prob_order: int = 1
    prob_order_z: int = 0
    seg_order: int = 1  # the previous stage's label map (cascade)
    seg_order_z: int = 0
    force_separate_z: object = None
    regions: tuple | None = None  # region-based: the label set of each output channel (sigmoid)
    region_order: tuple | None = None  # label written where a region's probability > 0.5, in this order
    previous_stage: "Model | None" = None  # cascade: runs first, its labels become input channels
    stage_labels: tuple = ()  # cascade: foreground labels of the previous stage, one channel each
    description: str = ""
    batch: int | None = None  # tiles per forward (set by the runner for the device in use)

    @property
    def num_classes(self) -> int:
        """Output channels of the network."""
        if self.regions is not None:
            return len(self.regions)
        return max(self.labels.values()) + 1

    def target_spacing(self, spacing_transposed) -> tuple:
        """Three entries: a 2d configuration keeps the case's own spacing along the slice axis."""
        if len(self.spacing) < len(spacing_transposed):
            return (float(spacing_transposed[0]), *self.spacing)
        return tuple(self.spacing)

    def stages(self) -> list["Model"]:
        return (self.previous_stage.stages() if self.previous_stage else []) + [self]


@dataclass
class Pipeline:
    """What a case goes through: one configuration (a cascade brings its first stage), or an ensemble of
    several whose probabilities are averaged; then nnU-Net's postprocessing."""
    members: list
    postprocessing: list = field(default_factory=list)  # label sets, keep-largest-component steps in order
    description: str = ""

    @property
    def models(self) -> list[Model]:
        out = []
        for m in self.members:
            out += [s for s in m.stages() if all(s is not o for o in out)]
        return out

    @property
    def networks(self) -> list:
        return [net for m in self.models for net in m.networks]

    @property
    def first(self) -> Model:
        """The model whose preprocessing starts every case (prefetched while the device works)."""
        return self.members[0].stages()[0]

    @property
    def simple(self) -> bool:
        """One model, one stage: the case's array is not needed after its preprocessing."""
        return len(self.members) == 1 and self.members[0].previous_stage is None

    @property
    def labels(self) -> dict:
        return self.members[0].labels

    # the first model's figures, for logs, estimates and tests of single models
    def __getattr__(self, name):
        if name in ("patch_size", "spacing", "mirror_axes", "normalization", "num_classes", "transpose_backward",
                    "transpose_forward", "intensity", "regions"):
            return getattr(self.members[-1], name)
        raise AttributeError(name)


def _load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UnsupportedModel(f"model folder is missing {path.name} ({path}); copy the whole nnU-Net results folder") from None
    except json.JSONDecodeError as exc:
        raise UnsupportedModel(f"{path} is not valid JSON ({exc})") from None


def _configuration(plans: dict, name: str) -> dict:
    """Resolve nnU-Net's `inherits_from` chain into one configuration dict."""
    try:
        return resolved_configuration(plans, name)
    except KeyError:
        raise UnsupportedModel(f"configuration {name!r} not in plans.json "
                               f"(has {sorted(plans.get('configurations', {}))})") from None


def _labels(dataset: dict, folder: Path) -> tuple[dict, tuple | None, tuple | None]:
    """(labels, regions, region_order) as nnU-Net's LabelManager reads dataset.json."""
    raw = {k: v for k, v in (dataset.get("labels") or {}).items() if k != "ignore"}
    if "background" not in raw:
        raise UnsupportedModel(f"{folder}/dataset.json declares no background label")
    has_regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in raw.values())
    if not has_regions:
        labels = {str(k): int(v[0] if isinstance(v, (list, tuple)) else v) for k, v in raw.items()}
        if sorted(labels.values()) != list(range(len(labels))):
            raise UnsupportedModel(f"{folder}/dataset.json labels are not 0..{len(labels) - 1} consecutive, which "
                                   f"nnU-Net's argmax needs; keep the folder as nnU-Net trained it")
        return labels, None, None
    order = dataset.get("regions_class_order")
    regions = []
    for k, v in raw.items():
        ids = tuple(int(i) for i in (v if isinstance(v, (list, tuple)) else [v]))
        if set(ids) != {0}:
            regions.append(ids)
    if not isinstance(order, list) or len(order) != len(regions):
        raise UnsupportedModel(f"{folder}/dataset.json is region-based but its regions_class_order does not name one "
                               f"label per region ({len(regions)})")
    if max(order) > 255:
        raise UnsupportedModel(f"{folder}/dataset.json: labels above 255 do not fit the uint8 output")
    labels = {str(k): tuple(int(i) for i in v) if isinstance(v, (list, tuple)) else int(v) for k, v in raw.items()}
    return labels, tuple(regions), tuple(int(c) for c in order)


# nnU-Net 2.0 - 2.3.0 plans carry the network as separate keys; nnU-Net 2.4+ maps them like this
# (plans_handler.ConfigurationManager); ResidualEncoderUNet now lives in architectures.unet.
_OLD_UNETS = {"PlainConvUNet": ("dynamic_network_architectures.architectures.unet.PlainConvUNet", "n_conv_per_stage"),
              "ResidualEncoderUNet": ("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
                                      "n_blocks_per_stage")}


def _architecture(conf: dict, folder: Path) -> dict:
    if "architecture" in conf:
        return conf["architecture"]
    name = conf.get("UNet_class_name")
    if name not in _OLD_UNETS:
        raise UnsupportedModel(f"{folder}/plans.json has neither 'architecture' nor a known UNet_class_name "
                               f"({name!r}); re-plan with nnU-Net >= 2.4, or build with ENGINE=nnunet")
    cls, blocks = _OLD_UNETS[name]
    dim = len(conf["patch_size"])
    n = len(conf["n_conv_per_stage_encoder"])
    return {
        "network_class_name": cls,
        "arch_kwargs": {
            "n_stages": n,
            "features_per_stage": [min(conf["UNet_base_num_features"] * 2 ** i, conf["unet_max_num_features"])
                                   for i in range(n)],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d", "kernel_sizes": conf["conv_kernel_sizes"],
            "strides": conf["pool_op_kernel_sizes"], blocks: conf["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": conf["n_conv_per_stage_decoder"], "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
        },
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def _check_preprocessing(conf: dict, folder: Path) -> None:
    problem = fast_engine_problem(conf)
    if problem:
        raise UnsupportedModel(f"{folder}: {problem}; build with ENGINE=nnunet (nnU-Net's own predictor)")


def load_configuration(folder: Path, fold_names: Sequence[str], checkpoint: str = CHECKPOINT,
                       configuration: str | None = None) -> Model:
    """One nnU-Net v2 configuration folder and the chosen fold folders (their `checkpoint`)."""
    dataset = _load_json(folder / "dataset.json")
    plans = _load_json(folder / "plans.json")
    labels, regions, region_order = _labels(dataset, folder)
    image_channels = len(dataset.get("channel_names", dataset.get("modality", {"0": "CT"})))
    if image_channels != 1:
        raise UnsupportedModel(f"{folder}: the model expects {image_channels} input channels; AMOS22 task 1 gives "
                               f"one CT channel")
    networks, config_name, mirror_axes, conf = [], configuration, None, None
    for fold in fold_names:
        path = folder / fold / checkpoint
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        name = ckpt.get("init_args", {}).get("configuration")
        if name is None:
            raise UnsupportedModel(f"{path} has no init_args.configuration; not an nnU-Net v2 checkpoint")
        if config_name not in (None, name):
            raise UnsupportedModel(f"{path} was trained as configuration {name}, not {config_name}; keep one "
                                   f"configuration per folder, as nnU-Net writes them")
        config_name = name
        if conf is None:
            conf = _configuration(plans, name)
            _check_preprocessing(conf, folder)
            arch = _architecture(conf, folder)
            axes = ckpt.get("inference_allowed_mirroring_axes")
            mirror_axes = tuple(int(a) for a in axes) if axes is not None else ()  # none saved: no mirroring
            fg = [v for v in labels.values() if isinstance(v, int) and v != 0]
            extra = len(fg) if conf.get("previous_stage") else 0
            heads = len(regions) if regions is not None else max(labels.values()) + 1
        net = build_network(arch, image_channels + extra, heads)
        try:
            net.load_state_dict(ckpt["network_weights"])
        except RuntimeError as exc:
            raise UnsupportedModel(f"{path}: its weights do not fit the network plans.json describes "
                                   f"({str(exc).splitlines()[0][:120]}); a trainer that changes the network "
                                   f"({ckpt.get('trainer_name')}) needs ENGINE=nnunet") from None
        networks.append(net.eval())
    dk = conf.get("resampling_fn_data_kwargs", {})
    pk = conf.get("resampling_fn_probabilities_kwargs", {})
    sk = conf.get("resampling_fn_seg_kwargs", {})
    kind = "region-based " if regions is not None else ""
    return Model(
        networks=networks, labels=labels, patch_size=tuple(conf["patch_size"]), spacing=tuple(conf["spacing"]),
        normalization=conf["normalization_schemes"][0],
        intensity=plans.get("foreground_intensity_properties_per_channel", {}).get("0", {}),
        transpose_forward=tuple(plans.get("transpose_forward", (0, 1, 2))),
        transpose_backward=tuple(plans.get("transpose_backward", (0, 1, 2))), mirror_axes=mirror_axes,
        data_order=dk.get("order", 3), data_order_z=dk.get("order_z", 0),
        prob_order=pk.get("order", 1), prob_order_z=pk.get("order_z", 0),
        seg_order=sk.get("order", 1), seg_order_z=sk.get("order_z", 0),
        force_separate_z=dk.get("force_separate_z"), regions=regions, region_order=region_order,
        stage_labels=tuple(sorted(v for v in labels.values() if isinstance(v, int) and v != 0))
        if conf.get("previous_stage") else (),
        description=f"{kind}{config_name} {', '.join(fold_names)} "
                    f"({arch['network_class_name'].rsplit('.', 1)[-1]})",
    )


def load_nnunet(choice: Choice) -> Pipeline:
    """Every configuration the choice names (cascade stages linked), and its postprocessing steps."""
    root = Path(choice.root)
    members = []
    loaded: dict[str, Model] = {}
    for member in choice.members:
        model = None
        for stage in member.stages():
            if stage.folder not in loaded:
                loaded[stage.folder] = load_configuration(root / stage.folder, stage.folds, choice.checkpoint,
                                                          stage.configuration)
            previous, model = model, loaded[stage.folder]
            if previous is not None:
                model.previous_stage = previous
        members.append(model)
    steps = []
    if choice.postprocessing:
        try:
            steps = postprocessing.read_steps(root / choice.postprocessing)
        except postprocessing.PostprocessingError as exc:
            raise UnsupportedModel(str(exc)) from None
    pp = f"; postprocessing: {len(steps)} step(s)" if steps else ""
    return Pipeline(members, steps, f"nnU-Net v2 {choice.kind_words}: "
                                    f"{'; '.join(m.description for m in loaded.values())}{pp}")


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


def _unpacked(zip_path: Path) -> Path:
    """The zip's checkpoints, JSON and postprocessing files in a temporary folder removed at exit."""
    tmp = tempfile.TemporaryDirectory(prefix="amosseg-model-")
    atexit.register(tmp.cleanup)
    with zipfile.ZipFile(zip_path) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or name.startswith("/") or ".." in name.split("/"):
                continue
            if name.endswith((".pth", ".json", ".pkl")):
                z.extract(info, tmp.name)
    return Path(tmp.name)


def resolve_model_dir(folder: Path) -> Path:
    """The model folder to read: MODEL_DIR itself, or nnUNetv2_export_model_to_zip's zip unpacked."""
    folder = Path(folder)
    if folder.is_file() and zipfile.is_zipfile(folder):
        folder = _unpacked(folder)
    if not folder.is_dir():
        raise UnsupportedModel(f"model folder {folder} does not exist; put your model in weights/ or set MODEL_DIR")
    return folder


def load_model(folder: Path, folds: Sequence[str] | str | None = None, checkpoint: str = CHECKPOINT) -> Pipeline:
    """Load whatever the folder holds, as model_choice.choose_dir reads it."""
    folder = resolve_model_dir(folder)
    folds = parse_folds(folds) if isinstance(folds, str) else folds
    choice = choose_dir(folder, checkpoint, folds)
    if choice.kind == "torchscript":
        if not choice.ok:
            _load_json(folder / "model.json")  # invalid JSON: say where it breaks
            raise UnsupportedModel(f"{folder}: {choice.problem}")
        return Pipeline([load_torchscript(folder)], [], "TorchScript model")
    if not choice.ok:
        raise UnsupportedModel(f"{folder}: {choice.problem}")
    return load_nnunet(choice)
