"""Build a cached zoo of REAL nnU-Net v2 results folders, with nnU-Net's own reference predictions.

Why: our inference engine must agree with `nnUNetv2_predict` on every kind of model folder nnU-Net
writes (2d, 3d_fullres with several folds, 3d_lowres, the cascade, ResEnc, region-based, an
ensemble with postprocessing, the exported zip). Hand-written stand-ins would only test our own
reading of nnU-Net; here every file comes from nnU-Net's command-line tools, run on synthetic
phantoms: planning, preprocessing, a very short training (`nnUNetTrainer_zoo`), validation,
find_best_configuration, export, prediction, ensembling and postprocessing.

Each step leaves a stamp in `<out>/.done/`; a rerun skips finished steps, so an interrupted build
resumes. A change of this file, of the trainer or of the nnunetv2 version rebuilds the whole
folder. Tests read only `<out>/zoo.json`. nnU-Net's output goes to `<out>/logs/<step>.log`.

    python -m amoskit.devtools.nnunet_zoo --out .cache/nnunet-zoo
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

BIN = Path(sys.executable).parent  # nnU-Net's console scripts live next to this interpreter
TRAINER_SRC = Path(__file__).with_name("nnUNetTrainer_zoo.py")
TRAINER = "nnUNetTrainer_zoo"
CHECKPOINT = "checkpoint_final.pth"
MANIFEST_VERSION = 1

# Phantom size and GPU memory target: nnU-Net plans a 3d_lowres stage (hence the cascade) only when
# the 3d_fullres patch covers under a quarter of the median case and the lowres case is less than
# half of it. With 1 GB that needs scale 0.5, whose validation (8 mirrorings) and sliding windows
# take many minutes per case on 2 CPU cores; at scale 0.2 (about 90 x 70 x 20 voxels) 0.05 GB does it,
# with small patches (12 x 32 x 32 fullres, 16 x 28 x 32 lowres) that keep the validations short.
# Five cases: the fewest nnU-Net's 5-fold split takes (one validation case per fold).
SCALE = 0.2
GPU_MEMORY_TARGET = "0.05"
TRAIN_SEEDS = range(100, 105)
TEST_INPUTS = {"zoo_a": 900, "zoo.b": 901, "Zoo C": 902}  # arbitrary names, as the organisers' are

LABELS_ID, LABELS_DS = 901, "Dataset901_ZooLabels"
REGIONS_ID, REGIONS_DS = 902, "Dataset902_ZooRegions"
PLANS = "nnUNetPlans_zoo"
RESENC_PLANS = "nnUNetResEncUNetMPlans_zoo"
# Overlapping regions (sigmoid outputs): all organs > both kidneys > left kidney, and the liver apart.
# regions_class_order writes later regions over earlier ones; the values are chosen so that the
# written label map, read with the AMOS ids, gives back the regions (as BraTS's 1, 2, 3 do).
REGION_LABELS = {"background": 0, "organs": list(range(1, 16)), "kidneys": [2, 3], "left kidney": [3], "liver": 6}
REGIONS_CLASS_ORDER = [1, 2, 3, 6]

console = Console(stderr=True)


class StepFailed(RuntimeError):
    """A tool exited non-zero (or left a result missing); the message names the log."""


@dataclass
class Ctx:
    """Where the build writes, and the step whose log takes the tools' output."""
    out: Path
    log: Path | None = None

    @property
    def raw(self) -> Path:
        return self.out / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.out / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.out / "nnUNet_results"

    @property
    def reference(self) -> Path:
        return self.out / "reference"

    @property
    def done(self) -> Path:
        return self.out / ".done"

    def env(self) -> dict[str, str]:
        """nnU-Net's three folders, as its tools read them from the environment."""
        return {"nnUNet_raw": str(self.raw), "nnUNet_preprocessed": str(self.preprocessed),
                "nnUNet_results": str(self.results)}


def tool_env(ctx: Ctx, extra: dict[str, str] | None = None) -> dict[str, str]:
    """nnU-Net's folders plus a CPU setup: no torch.compile, few worker processes."""
    env = dict(os.environ, **ctx.env(), nnUNet_compile="f", nnUNet_n_proc_DA="2", nnUNet_def_n_proc="2",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return dict(env, **(extra or {}))


def run_tool(ctx: Ctx, argv: list[str], extra_env: dict[str, str] | None = None) -> float:
    """Run one nnU-Net tool from BIN, its output appended to the step's log; the wall seconds."""
    argv = [str(BIN / argv[0]), *map(str, argv[1:])]
    with open(ctx.log, "a") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        t0 = time.perf_counter()
        rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=tool_env(ctx, extra_env))
        seconds = time.perf_counter() - t0
        log.write(f"[exit {rc} after {seconds:.1f} s]\n")
    if rc != 0:
        raise StepFailed(f"{Path(argv[0]).name} exited {rc}")
    return seconds


def fresh(*paths: Path) -> None:
    """Remove what an interrupted run of a step may have left, so it starts clean."""
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ----------------------------------------------------------------------------------------- data
def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def dataset_json(labels: dict, **extra) -> dict:
    return {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": len(TRAIN_SEEDS),
            "file_ending": ".nii.gz", **extra}


def step_data(ctx: Ctx) -> dict:
    """Training phantoms in nnU-Net's raw layout (plain and region-based) and unseen test inputs."""
    from amoskit.contract import AMOS_LABEL_IDS
    from amoskit.data.phantoms import make_phantom, write_phantom

    labels, regions = ctx.raw / LABELS_DS, ctx.raw / REGIONS_DS
    inputs, inputs_nn, inputs_labels = ctx.out / "inputs", ctx.out / "inputs_nnunet", ctx.out / "inputs_labels"
    fresh(labels, regions, inputs, inputs_nn, inputs_labels)
    for d in (labels / "imagesTr", labels / "labelsTr", inputs, inputs_nn, inputs_labels):
        d.mkdir(parents=True)
    for i, seed in enumerate(TRAIN_SEEDS):
        name = f"zoo_{i:03d}"
        write_phantom(make_phantom(seed, SCALE), labels / "imagesTr" / f"{name}_0000.nii.gz",
                      labels / "labelsTr" / f"{name}.nii.gz")
    write_json(labels / "dataset.json", dataset_json(dict(AMOS_LABEL_IDS), name=LABELS_DS))
    shutil.copytree(labels / "imagesTr", regions / "imagesTr")
    shutil.copytree(labels / "labelsTr", regions / "labelsTr")
    write_json(regions / "dataset.json", dataset_json(REGION_LABELS, regions_class_order=REGIONS_CLASS_ORDER,
                                                      name=REGIONS_DS))
    for name, seed in TEST_INPUTS.items():
        write_phantom(make_phantom(seed, SCALE), inputs / f"{name}.nii.gz", inputs_labels / f"{name}.nii.gz")
        shutil.copyfile(inputs / f"{name}.nii.gz", inputs_nn / f"{name}_0000.nii.gz")
    return {}


# ------------------------------------------------------------------------------------- planning
def plan(ctx: Ctx, dataset_id: int, plans: str, configs: list[str], planner: str | None = None) -> float:
    """nnUNetv2_plan_and_preprocess; the default planner also verifies the raw dataset (once)."""
    argv = ["nnUNetv2_plan_and_preprocess", "-d", dataset_id, "-gpu_memory_target", GPU_MEMORY_TARGET,
            "-overwrite_plans_name", plans, "-npfp", "2", "-np", "2", "-c", *configs]
    argv += ["-pl", planner] if planner else ["--verify_dataset_integrity"]
    return run_tool(ctx, argv)


def load_plans(ctx: Ctx, dataset: str, plans: str) -> dict:
    return json.loads((ctx.preprocessed / dataset / f"{plans}.json").read_text())


def step_plan_labels(ctx: Ctx) -> dict:
    """Default planner on the plain labels: 2d, 3d_fullres, 3d_lowres and the cascade."""
    fresh(ctx.preprocessed / LABELS_DS)
    plan(ctx, LABELS_ID, PLANS, ["2d", "3d_fullres", "3d_lowres"])
    configs = sorted(load_plans(ctx, LABELS_DS, PLANS)["configurations"])
    missing = {"2d", "3d_fullres", "3d_lowres", "3d_cascade_fullres"} - set(configs)
    if missing:
        raise StepFailed(f"nnU-Net planned {configs}, not {sorted(missing)}: change SCALE or GPU_MEMORY_TARGET")
    return {"configurations": configs}


def step_plan_resenc(ctx: Ctx) -> dict:
    """ResEnc M planner on the same fingerprint (own plans name), 3d_fullres only."""
    plan(ctx, LABELS_ID, RESENC_PLANS, ["3d_fullres"], planner="nnUNetPlannerResEncM")
    return {"configurations": sorted(load_plans(ctx, LABELS_DS, RESENC_PLANS)["configurations"])}


def step_plan_regions(ctx: Ctx) -> dict:
    """Default planner on the region-based dataset, 3d_fullres only."""
    fresh(ctx.preprocessed / REGIONS_DS)
    plan(ctx, REGIONS_ID, PLANS, ["3d_fullres"])
    return {"configurations": sorted(load_plans(ctx, REGIONS_DS, PLANS)["configurations"])}


# ------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class Model:
    """One trained configuration: where nnU-Net puts it and how nnUNetv2_predict names it."""
    dataset_id: int
    dataset: str
    plans: str
    configuration: str

    def folder(self, ctx: Ctx) -> Path:
        return ctx.results / self.dataset / f"{TRAINER}__{self.plans}__{self.configuration}"

    def predict_args(self) -> list:
        return ["-d", self.dataset_id, "-p", self.plans, "-tr", TRAINER, "-c", self.configuration]


FULLRES = Model(LABELS_ID, LABELS_DS, PLANS, "3d_fullres")
TWO_D = Model(LABELS_ID, LABELS_DS, PLANS, "2d")
LOWRES = Model(LABELS_ID, LABELS_DS, PLANS, "3d_lowres")
CASCADE = Model(LABELS_ID, LABELS_DS, PLANS, "3d_cascade_fullres")
RESENC = Model(LABELS_ID, LABELS_DS, RESENC_PLANS, "3d_fullres")
REGIONS = Model(REGIONS_ID, REGIONS_DS, PLANS, "3d_fullres")


def train(ctx: Ctx, model: Model, fold, validate: bool = False, npz: bool = False) -> dict:
    """nnUNetv2_train on the CPU; nnU-Net's final validation only where `validate` asks for it."""
    fold_dir = model.folder(ctx) / f"fold_{fold}"
    fresh(fold_dir)
    argv = ["nnUNetv2_train", model.dataset_id, model.configuration, fold, "-tr", TRAINER, "-p", model.plans,
            "-device", "cpu", *(["--npz"] if npz else [])]
    # nnUNet_n_proc_DA=0: augmentation in the trainer's process, no workers to start for 6 iterations.
    # OMP_WAIT_POLICY=PASSIVE: idle torch threads sleep; on 2 cores shared with other work, spinning
    # threads made the validation up to 3x slower (not set for the timed nnUNetv2_predict runs).
    env = {"ZOO_VALIDATE": "1" if validate else "0", "nnUNet_n_proc_DA": "0", "OMP_WAIT_POLICY": "PASSIVE"}
    seconds = run_tool(ctx, argv, env)
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        if not (fold_dir / name).is_file():
            raise StepFailed(f"{fold_dir / name} missing after training")
    return {"seconds": seconds, "fold_dir": str(fold_dir)}


def step_train_lowres(ctx: Ctx) -> dict:
    """3d_lowres fold all, validated: the validation of every case (fold all validates on its
    training cases) writes predicted_next_stage/3d_cascade_fullres, which the cascade trains on."""
    fresh(LOWRES.folder(ctx) / "predicted_next_stage")
    record = train(ctx, LOWRES, "all", validate=True)
    next_stage = LOWRES.folder(ctx) / "predicted_next_stage" / "3d_cascade_fullres"
    found = sorted(p.name for p in next_stage.glob("zoo_*")) if next_stage.is_dir() else []
    if len(found) < len(TRAIN_SEEDS):
        raise StepFailed(f"{next_stage} holds {len(found)} files, not one per training case")
    return dict(record, predicted_next_stage=found)


# ------------------------------------------------------------- find_best, postprocessing, export
def step_find_best(ctx: Ctx) -> dict:
    """nnUNetv2_find_best_configuration over 2d and 3d_fullres fold 0 (their ensemble included)."""
    ds = ctx.results / LABELS_DS
    fresh(ds / "ensembles", ds / "inference_information.json", ds / "inference_instructions.txt",
          *(m.folder(ctx) / "crossval_results_folds_0" for m in (TWO_D, FULLRES)))
    run_tool(ctx, ["nnUNetv2_find_best_configuration", LABELS_ID, "-c", "2d", "3d_fullres", "-f", "0",
                   "-p", PLANS, "-tr", TRAINER, "-np", "2"])
    info = json.loads((ds / "inference_information.json").read_text())
    best = info["best_model_or_ensemble"]
    return {"all_results": info["all_results"], "selected": best["selected_model_or_models"],
            "result_on_crossval_pre_pp": best["result_on_crossval_pre_pp"],
            "result_on_crossval_post_pp": best["result_on_crossval_post_pp"],
            "postprocessing_pkl": best["postprocessing_file"],
            "postprocessing": postprocessing_summary(best["postprocessing_file"])}


def ensemble_crossval_folder(ctx: Ctx) -> Path:
    found = sorted((ctx.results / LABELS_DS / "ensembles").glob("ensemble___*"))
    if len(found) != 1:
        raise StepFailed(f"expected one ensemble folder, found {[p.name for p in found]}")
    return found[0]


def step_ensemble_postprocessing(ctx: Ctx) -> dict:
    """The ensemble's postprocessing.pkl: find_best_configuration's when the ensemble won; else
    nnUNetv2_determine_postprocessing on a copy of its cross-validation (nnU-Net's folder untouched)."""
    source = ensemble_crossval_folder(ctx)
    if (source / "postprocessing.pkl").is_file():
        return {"pkl": str(source / "postprocessing.pkl"), "by": "nnUNetv2_find_best_configuration"}
    copy = ctx.out / "extra" / "ensemble_crossval"
    fresh(copy)
    shutil.copytree(source, copy)
    run_tool(ctx, ["nnUNetv2_determine_postprocessing", "-i", copy,
                   "-ref", ctx.preprocessed / LABELS_DS / "gt_segmentations", "-np", "2"])
    return {"pkl": str(copy / "postprocessing.pkl"), "by": "nnUNetv2_determine_postprocessing"}


def step_export_zip(ctx: Ctx) -> dict:
    """nnUNetv2_export_model_to_zip of the 2d and 3d_fullres fold-0 models (with the ensemble)."""
    target = ctx.out / "zoo_901.zip"
    fresh(target)
    run_tool(ctx, ["nnUNetv2_export_model_to_zip", "-d", LABELS_ID, "-o", target, "-c", "2d", "3d_fullres",
                   "-tr", TRAINER, "-p", PLANS, "-f", "0", "-chk", CHECKPOINT])
    return {"zip": str(target)}


# ----------------------------------------------------------------------------------- prediction
def predict(ctx: Ctx, model: Model, folds: list, out: Path, *extra) -> dict:
    """nnUNetv2_predict on inputs_nnunet/ without TTA; the command and its wall seconds."""
    fresh(out)
    argv = ["nnUNetv2_predict", "-i", ctx.out / "inputs_nnunet", "-o", out, *model.predict_args(),
            "-f", *folds, "-chk", CHECKPOINT, "-device", "cpu", "--disable_tta", "--disable_progress_bar",
            "-npp", "1", "-nps", "1", *extra]
    seconds = run_tool(ctx, argv)
    return {"model_folder": str(model.folder(ctx)), "dataset": model.dataset, "plans": model.plans,
            "configuration": model.configuration, "folds": folds, "checkpoint": CHECKPOINT,
            "reference": str(out), "command": [str(BIN / argv[0]), *map(str, argv[1:])],
            "seconds": round(seconds, 2), "load_average": round(os.getloadavg()[0], 2)}


def predict_kind(kind: str, model: Model, folds: list, *extra_fn: Callable[[Ctx], list]):
    def step(ctx: Ctx) -> dict:
        extra = [a for fn in extra_fn for a in fn(ctx)]
        return predict(ctx, model, folds, ctx.reference / kind, *extra)
    step.__doc__ = f"nnUNetv2_predict of {model.configuration} ({model.plans}, {model.dataset}) into reference/{kind}."
    return step


def prev_stage(ctx: Ctx) -> list:
    return ["-prev_stage_predictions", ctx.reference / "3d_lowres"]


ENSEMBLE = [(TWO_D, [0]), (FULLRES, [0])]  # the pair find_best_configuration ensembles, fold 0


def step_predict_ensemble(ctx: Ctx) -> dict:
    """Both members with --save_probabilities, then nnUNetv2_ensemble, as inference_instructions say."""
    members = []
    for model, folds in ENSEMBLE:
        folder = ctx.reference / "ensemble_members" / model.configuration
        members.append(predict(ctx, model, folds, folder, "--save_probabilities"))
    out = ctx.reference / "ensemble"
    fresh(out)
    argv = ["nnUNetv2_ensemble", "-i", *(m["reference"] for m in members), "-o", out, "-np", "2"]
    seconds = run_tool(ctx, argv)
    return {"members": members, "reference": str(out), "folds": [0],
            "ensemble_command": [str(BIN / argv[0]), *map(str, argv[1:])], "ensemble_seconds": round(seconds, 2),
            "seconds": round(sum(m["seconds"] for m in members), 2)}


def apply_postprocessing(ctx: Ctx, source: Path, out: Path, pkl: str) -> dict:
    """nnUNetv2_apply_postprocessing as inference_instructions.txt writes it (plans.json beside the pkl)."""
    fresh(out)
    argv = ["nnUNetv2_apply_postprocessing", "-i", source, "-o", out, "-pp_pkl_file", pkl, "-np", "2",
            "-plans_json", Path(pkl).parent / "plans.json"]
    seconds = run_tool(ctx, argv)
    return {"reference": str(out), "postprocessing_pkl": pkl, "postprocessing": postprocessing_summary(pkl),
            "postprocessing_command": [str(BIN / argv[0]), *map(str, argv[1:])],
            "postprocessing_seconds": round(seconds, 2)}


def postprocessing_summary(pkl: str) -> dict | None:
    """What postprocessing.json says is applied (its Dice tables left out)."""
    path = Path(pkl).with_suffix(".json")
    if not path.is_file():
        return None
    pp = json.loads(path.read_text())
    return {k: pp.get(k) for k in ("postprocessing_fns", "postprocessing_kwargs")}


def step_ensemble_pp(ctx: Ctx) -> dict:
    """nnUNetv2_apply_postprocessing on the ensemble's output with the ensemble's pkl."""
    ensemble = read_stamp(ctx, "predict_ensemble")
    pp_source = read_stamp(ctx, "ensemble_postprocessing")
    record = apply_postprocessing(ctx, ctx.reference / "ensemble", ctx.reference / "ensemble_pp", pp_source["pkl"])
    return dict(ensemble, **record, raw_reference=ensemble["reference"], postprocessing_by=pp_source["by"])


def step_best(ctx: Ctx) -> dict:
    """What inference_instructions.txt says to run: when the ensemble won, reference/ensemble_pp; else
    the winner's fold-0 prediction (the ensemble member's: same model, folds and settings) and its
    postprocessing."""
    chosen = read_stamp(ctx, "find_best")
    if len(chosen["selected"]) > 1:
        return {"same_as": "ensemble_pp", **read_stamp(ctx, "predict_ensemble_pp")}
    configuration = chosen["selected"][0]["configuration"]
    member = next(m for m in read_stamp(ctx, "predict_ensemble")["members"] if m["configuration"] == configuration)
    record = apply_postprocessing(ctx, Path(member["reference"]), ctx.reference / "best", chosen["postprocessing_pkl"])
    return dict(member, **record, raw_reference=member["reference"], same_as=None)


# ------------------------------------------------------------------------------------- manifest
PREDICT_KINDS = ["3d_fullres", "2d", "3d_lowres", "3d_cascade_fullres", "resenc_m", "regions", "ensemble",
                 "ensemble_pp", "best"]


def step_manifest(ctx: Ctx) -> dict:
    """zoo.json: all tests need, with absolute paths."""
    ds = ctx.results / LABELS_DS
    manifest = {
        "version": MANIFEST_VERSION, "fingerprint": fingerprint(), "nnunetv2": metadata.version("nnunetv2"),
        "root": str(ctx.out), "env": ctx.env(), "trainer": TRAINER, "checkpoint": CHECKPOINT,
        "scale": SCALE, "gpu_memory_target_gb": float(GPU_MEMORY_TARGET),
        "datasets": {key: {"name": name, "id": i, "raw": str(ctx.raw / name),
                           "preprocessed": str(ctx.preprocessed / name), "results": str(ctx.results / name)}
                     for key, name, i in (("labels", LABELS_DS, LABELS_ID), ("regions", REGIONS_DS, REGIONS_ID))},
        "inputs": str(ctx.out / "inputs"), "inputs_nnunet": str(ctx.out / "inputs_nnunet"),
        "inputs_labels": str(ctx.out / "inputs_labels"), "cases": list(TEST_INPUTS),
        "inference_information": str(ds / "inference_information.json"),
        "inference_instructions": str(ds / "inference_instructions.txt"),
        "find_best": read_stamp(ctx, "find_best"),
        "zip": read_stamp(ctx, "export_zip")["zip"],
        "kinds": {kind: read_stamp(ctx, f"predict_{kind}") for kind in PREDICT_KINDS},
        "step_seconds": read_timings(ctx),
        "build_seconds": round(sum(read_timings(ctx).values()), 1),
    }
    write_json(ctx.out / "zoo.json", manifest)
    return {}


# ---------------------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[Ctx], dict]


def training(model: Model, fold, **kw) -> Callable[[Ctx], dict]:
    return lambda ctx: train(ctx, model, fold, **kw)


STEPS = [
    Step("data", "phantoms: 2 raw datasets + test inputs", step_data),
    Step("plan_labels", "plan + preprocess 901 (2d, 3d_fullres, 3d_lowres)", step_plan_labels),
    Step("plan_resenc", "plan + preprocess 901 ResEnc M (3d_fullres)", step_plan_resenc),
    Step("plan_regions", "plan + preprocess 902 regions (3d_fullres)", step_plan_regions),
    Step("train_3d_fullres_0", "train 901 3d_fullres fold 0 (+ validation --npz)",
         training(FULLRES, 0, validate=True, npz=True)),
    Step("train_3d_fullres_1", "train 901 3d_fullres fold 1", training(FULLRES, 1)),
    Step("train_2d_0", "train 901 2d fold 0 (+ validation --npz)", training(TWO_D, 0, validate=True, npz=True)),
    Step("train_3d_lowres_all", "train 901 3d_lowres fold all (+ validation)", step_train_lowres),
    Step("train_cascade_all", "train 901 3d_cascade_fullres fold all", training(CASCADE, "all")),
    Step("train_resenc_0", "train 901 ResEnc M 3d_fullres fold 0", training(RESENC, 0)),
    Step("train_regions_0", "train 902 regions 3d_fullres fold 0", training(REGIONS, 0)),
    Step("find_best", "find_best_configuration 901 (2d, 3d_fullres, ensemble)", step_find_best),
    Step("ensemble_postprocessing", "postprocessing.pkl of the ensemble", step_ensemble_postprocessing),
    Step("export_zip", "export_model_to_zip 901 -> zoo_901.zip", step_export_zip),
    Step("predict_3d_fullres", "predict 3d_fullres folds 0 1", predict_kind("3d_fullres", FULLRES, [0, 1])),
    Step("predict_2d", "predict 2d fold 0", predict_kind("2d", TWO_D, [0])),
    Step("predict_3d_lowres", "predict 3d_lowres fold all", predict_kind("3d_lowres", LOWRES, ["all"])),
    Step("predict_3d_cascade_fullres", "predict 3d_cascade_fullres fold all",
         predict_kind("3d_cascade_fullres", CASCADE, ["all"], prev_stage)),
    Step("predict_resenc_m", "predict ResEnc M fold 0", predict_kind("resenc_m", RESENC, [0])),
    Step("predict_regions", "predict regions fold 0", predict_kind("regions", REGIONS, [0])),
    Step("predict_ensemble", "predict 2d + 3d_fullres, nnUNetv2_ensemble", step_predict_ensemble),
    Step("predict_ensemble_pp", "apply_postprocessing to the ensemble", step_ensemble_pp),
    Step("predict_best", "the winner as inference_instructions.txt says", step_best),
    Step("manifest", "zoo.json", step_manifest),
]


# -------------------------------------------------------------------------------------- caching
def fingerprint() -> str:
    """What invalidates the zoo: this builder, the trainer, nnunetv2's version."""
    h = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), TRAINER_SRC.read_bytes(), metadata.version("nnunetv2").encode()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def stamp_path(ctx: Ctx, name: str) -> Path:
    return ctx.done / f"{name}.json"


def read_stamp(ctx: Ctx, name: str) -> dict:
    return json.loads(stamp_path(ctx, name).read_text())


def prepare_out(ctx: Ctx, fp: str) -> None:
    """Wipe a zoo built by another builder/trainer/nnunetv2; refuse a folder that is no zoo."""
    marker = ctx.done / "fingerprint"
    if ctx.out.exists() and any(ctx.out.iterdir()):
        if not marker.is_file():
            if not ctx.done.is_dir():
                raise SystemExit(f"{ctx.out} is not empty and holds no zoo (.done/): refusing to overwrite it")
        elif marker.read_text().strip() == fp:
            return
        console.print(f"[yellow]fingerprint changed: rebuilding {ctx.out} from scratch")
        shutil.rmtree(ctx.out)
    ctx.done.mkdir(parents=True, exist_ok=True)
    (ctx.out / "logs").mkdir(exist_ok=True)
    marker.write_text(fp + "\n")


def install_trainer() -> Path:
    """Copy the trainer to the top level of nnunetv2/training/nnUNetTrainer (where nnU-Net's
    lookup finds it before it imports subpackages such as primus, which needs timm)."""
    spec = importlib.util.find_spec("nnunetv2")
    target = Path(list(spec.submodule_search_locations)[0]) / "training" / "nnUNetTrainer" / TRAINER_SRC.name
    src = TRAINER_SRC.read_bytes()
    if not target.is_file() or target.read_bytes() != src:
        target.write_bytes(src)
    return target


def pending_steps(ctx: Ctx) -> list[Step]:
    """Steps run in order, so the finished ones are a prefix; the first gap reruns all after it."""
    for i, step in enumerate(STEPS):
        if not stamp_path(ctx, step.name).is_file():
            for later in STEPS[i:]:
                stamp_path(ctx, later.name).unlink(missing_ok=True)
            return STEPS[i:]
    return []


def read_timings(ctx: Ctx) -> dict[str, float]:
    path = ctx.done / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def run_step(ctx: Ctx, step: Step) -> float:
    """One step, its output in logs/<name>.log; its stamp and its seconds once it has finished."""
    ctx.log = ctx.out / "logs" / f"{step.name}.log"
    ctx.log.write_text(f"# {step.title}\n")
    t0 = time.perf_counter()
    record = step.run(ctx)
    seconds = time.perf_counter() - t0
    write_json(ctx.done / "timings.json", {**read_timings(ctx), step.name: round(seconds, 1)})
    write_json(stamp_path(ctx, step.name), record)
    return seconds


def fail(ctx: Ctx, step: Step, err: Exception) -> None:
    """The log's tail (unwrapped, as the tool wrote it) and where the whole log is."""
    lines = ctx.log.read_text(errors="replace").splitlines() if ctx.log and ctx.log.is_file() else []
    console.print(f"[red]✗ {step.title}: {err}")
    sys.stderr.write("\n".join(line.rsplit("\r", 1)[-1] for line in lines[-40:]) + "\n")
    console.print(f"[red]log: {ctx.log}")


@contextlib.contextmanager
def exclusive(out: Path):
    """One builder per zoo at a time (a test session and `make nnunet-zoo` may race): the second waits."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(out: Path) -> int:
    out = out.resolve()
    with exclusive(out):
        return build_locked(Ctx(out))


def build_locked(ctx: Ctx) -> int:
    """Run the pending steps under a progress bar; end with the table of kinds."""
    prepare_out(ctx, fingerprint())
    install_trainer()
    todo = pending_steps(ctx)
    if todo:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())
        t_all = time.perf_counter()
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("", total=len(STEPS), completed=len(STEPS) - len(todo))
            for step in todo:
                progress.update(task, description=step.title)
                try:
                    seconds = run_step(ctx, step)
                except Exception as err:  # a tool failed, or nnU-Net left something out
                    progress.stop()
                    fail(ctx, step, err)
                    return 1
                progress.console.print(f"[green]✓[/] {step.title} [dim]{seconds:.0f} s")
                progress.advance(task)
        console.print(f"zoo built in {time.perf_counter() - t_all:.0f} s")
    else:
        console.print(f"zoo up to date ({len(STEPS)} steps cached): {ctx.out / 'zoo.json'}")
    console.print(summary_table(json.loads((ctx.out / "zoo.json").read_text())))
    return 0


def short_folder(model_folder: str) -> str:
    """.../Dataset901_ZooLabels/nnUNetTrainer_zoo__nnUNetPlans_zoo__2d -> 901/nnUNetPlans/2d."""
    folder = Path(model_folder)
    _, plans, configuration = folder.name.split("__")
    return f"{folder.parent.name[7:10]}/{plans.removesuffix('_zoo')}/{configuration}"


def summary_table(manifest: dict) -> Table:
    """kind, model folder, folds, nnUNetv2_predict seconds (ensembles: both members')."""
    table = Table(title=f"nnU-Net zoo: {manifest['root']}/zoo.json")
    for col in ("kind", "folder", "folds", "seconds"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for kind, rec in manifest["kinds"].items():
        folders = [rec["model_folder"]] if "model_folder" in rec else [m["model_folder"] for m in rec["members"]]
        pp = " + pp" if rec.get("postprocessing_pkl") else ""
        table.add_row(kind, " + ".join(map(short_folder, folders)) + pp, " ".join(map(str, rec["folds"])),
                      f"{rec['seconds']:.1f}")
    return table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(".cache/nnunet-zoo"), help="zoo folder (default: %(default)s)")
    return build(ap.parse_args(argv).out)


if __name__ == "__main__":
    sys.exit(main())
