"""Build a cached model folder with OLD nnU-Net v2 (2.2.1), whose plans.json has no `architecture`.

Why: nnU-Net v2 before 2.3.1 wrote the network into plans.json as separate keys per configuration
(`UNet_class_name`, `UNet_base_num_features`, `n_conv_per_stage_encoder`, ...), not as the
`architecture` block newer releases write. Our engine maps such plans as nnU-Net's
ConfigurationManager does (inference/amosseg/model.py `_architecture`); only a folder that a real
old nnU-Net planned and trained, with that nnU-Net's own predictions, proves the mapping.

What it does, each step logged to `<out>/logs/<step>.log`:

1. venv: `<out>/venv` (python3.11 -m venv) with nnunetv2==2.2.1 and its contemporaries (numpy 1.26,
   dynamic-network-architectures 0.2, acvl-utils 0.2, batchgenerators 0.25; nnU-Net's family with
   --no-deps, so no timm, torchvision, dicom2nifti, imagecodecs), and the host's torch;
2. data: the zoo's phantoms (`amoskit.devtools.nnunet_zoo`: Dataset901_ZooLabels and its 3 test
   inputs) copied as Dataset911_OldPlans (generated with the zoo's own recipe when the zoo is absent);
3. plan: nnUNetv2_extract_fingerprint, nnUNetv2_plan_experiment -gpu_memory_target 0.05 (2.2.1's
   nnUNetv2_plan_and_preprocess takes only whole gigabytes), nnUNetv2_preprocess 3d_fullres; fails
   when a configuration of the plans holds `architecture`;
4. train: 3d_fullres fold 0, 6 iterations on the CPU (`nnUNetTrainer_zoo_old`, copied into the venv);
5. predict: 2.2.1's nnUNetv2_predict (CPU, --disable_tta, fold 0) into `<out>/reference/3d_fullres_old`;
6. manifest: `<out>/old_zoo.json`, all that tests need, with absolute paths and seconds per step.

Old nnU-Net runs with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1: its torch.load predates torch 2.6's
weights_only default, under which its checkpoints (numpy scalars inside) do not load.

Each step leaves a stamp in `<out>/.done/`; a rerun skips finished steps (a second run returns in
seconds). A change of this file or of the trainer rebuilds everything but the venv, which is rebuilt
when its pins (or the host's torch or Python) change.

    python -m amoskit.devtools.nnunet_old_zoo --out .cache/nnunet-old-zoo
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable

from amoskit import REPO
from amoskit.devtools import nnunet_zoo

OLD_NNUNET = "2.2.1"
TRAINER_SRC = Path(__file__).with_name("nnUNetTrainer_zoo_old.py")
TRAINER = "nnUNetTrainer_zoo_old"
CHECKPOINT = "checkpoint_final.pth"
MANIFEST_VERSION = 1

# The venv: installed with their dependencies (binary wheels of late 2023, as nnunetv2 2.2.1's
# users had them: numpy 1.x, which old nnU-Net and acvl-utils 0.2 were written against).
PINS = [
    "numpy==1.26.4", "scipy==1.11.4", "scikit-image==0.22.0", "scikit-learn==1.3.2", "pandas==2.1.4",
    "SimpleITK==2.3.1", "nibabel==5.2.0", "matplotlib==3.8.2", "seaborn==0.13.0", "tqdm==4.66.1",
    "tifffile==2023.12.9", "requests==2.31.0", "threadpoolctl==3.2.0", "future==0.18.3", "pillow==10.1.0",
    "connected-components-3d==3.12.3",
]
# nnU-Net's own family, --no-deps: nnunetv2's list pulls dicom2nifti, imagecodecs, graphviz, yacs
# (never imported to plan, train or predict) and batchgenerators 0.25 pulls unittest2 (tests only).
# dynamic-network-architectures 0.2 and acvl-utils 0.2: the releases 2.2.1 was made with (0.3+
# came with nnU-Net's ResEnc presets).
NODEPS_PINS = [f"nnunetv2=={OLD_NNUNET}", "dynamic-network-architectures==0.2", "acvl-utils==0.2",
               "batchgenerators==0.25"]
REPORTED = ["nnunetv2", "torch", "numpy", "dynamic_network_architectures", "acvl_utils", "batchgenerators",
            "scipy", "SimpleITK"]

DEFAULT_ZOO = REPO / ".cache" / "nnunet-zoo"
ZOO_DS = "Dataset901_ZooLabels"
DATASET_ID, DATASET = 911, "Dataset911_OldPlans"
PLANS = "nnUNetPlans_zoo"
CONFIGURATION = "3d_fullres"
FOLD = 0
GPU_MEMORY_TARGET = "0.05"  # as the current zoo: small patches, several sliding-window tiles per case
REFERENCE = "3d_fullres_old"
# What old plans carry instead of `architecture` (2.2.1's ConfigurationManager reads these).
OLD_KEYS = ("UNet_class_name", "UNet_base_num_features", "n_conv_per_stage_encoder", "n_conv_per_stage_decoder",
            "unet_max_num_features", "conv_kernel_sizes", "pool_op_kernel_sizes")


class StepFailed(RuntimeError):
    """A tool exited non-zero, or left a result missing or wrong."""


@dataclass
class Ctx(nnunet_zoo.Ctx):
    """nnunet_zoo's folders (raw, preprocessed, results, done, env) under `out`, plus the old
    nnunetv2's own virtualenv and the current zoo it takes its data from."""
    zoo: Path = Path()

    @property
    def venv(self) -> Path:
        return self.out / "venv"

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def model_folder(self) -> Path:
        return self.results / DATASET / f"{TRAINER}__{PLANS}__{CONFIGURATION}"

    @property
    def reference(self) -> Path:
        return self.out / "reference" / REFERENCE


def tool_env(ctx: Ctx, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The old venv first on PATH, nothing of the host's Python leaking in, a 2-core CPU setup."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(ctx.env(), VIRTUAL_ENV=str(ctx.venv), PATH=f"{ctx.bin}{os.pathsep}{env.get('PATH', '')}",
               TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1", nnUNet_def_n_proc="2", nnUNet_n_proc_DA="2",
               MPLBACKEND="Agg", PYTHONUNBUFFERED="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return dict(env, **(extra or {}))


def run(ctx: Ctx, argv: list, extra_env: dict[str, str] | None = None) -> float:
    """One command, its output appended to the step's log; the wall seconds."""
    argv = [str(a) for a in argv]
    with open(ctx.log, "a") as log:
        log.write(f"\n$ {' '.join(argv)}\n")
        log.flush()
        t0 = time.perf_counter()
        rc = subprocess.call(argv, stdout=log, stderr=subprocess.STDOUT, env=tool_env(ctx, extra_env),
                             stdin=subprocess.DEVNULL)
        seconds = time.perf_counter() - t0
        log.write(f"[exit {rc} after {seconds:.1f} s]\n")
    if rc != 0:
        raise StepFailed(f"{Path(argv[0]).name} exited {rc}")
    return seconds


def tool(ctx: Ctx, name: str, *args, extra_env: dict[str, str] | None = None) -> float:
    """An nnU-Net console script of the old venv."""
    return run(ctx, [ctx.bin / name, *args], extra_env)


def fresh(*paths: Path) -> None:
    for p in paths:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ venv
def host_torch() -> str:
    """The host's torch release (2.13.0 of 2.13.0+cpu): pip takes the same wheel (/opt/wheels is a
    find-links folder), as `make setup-dev` installs it."""
    return metadata.version("torch").split("+")[0]


def python311() -> str:
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if not found:
        raise StepFailed("python3.11 not found (old nnU-Net's venv is made with it)")
    return found


def venv_key() -> str:
    """What the venv is made of; a change rebuilds it (this file's other edits do not)."""
    parts = [*PINS, "--no-deps", *NODEPS_PINS, f"torch=={host_torch()}", platform.python_version()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def venv_versions(ctx: Ctx) -> dict[str, str]:
    """The versions inside the venv, after importing what planning, training and prediction import."""
    code = ("import json, importlib.metadata as m\n"
            "import nnunetv2.experiment_planning.plan_and_preprocess_entrypoints\n"
            "import nnunetv2.run.run_training, nnunetv2.inference.predict_from_raw_data\n"
            f"print(json.dumps({{p: m.version(p) for p in {REPORTED!r}}}))")
    out = subprocess.run([ctx.bin / "python", "-c", code], env=tool_env(ctx), capture_output=True, text=True)
    if out.returncode != 0:
        lines = (out.stderr or out.stdout).strip().splitlines() or ["no output"]
        raise StepFailed(f"the venv does not import old nnU-Net: {lines[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def install_trainer(ctx: Ctx) -> Path:
    """The trainer at the top level of the venv's nnunetv2/training/nnUNetTrainer/."""
    found = sorted((ctx.venv / "lib").glob("python3*/site-packages/nnunetv2/training/nnUNetTrainer"))
    if not found:
        raise StepFailed(f"no nnunetv2 in {ctx.venv}")
    target = found[0] / TRAINER_SRC.name
    src = TRAINER_SRC.read_bytes()
    if not target.is_file() or target.read_bytes() != src:
        target.write_bytes(src)
    return target


def step_venv(ctx: Ctx) -> dict:
    key, marker = venv_key(), ctx.venv / ".amosseg-venv-key"
    reused = marker.is_file() and marker.read_text().strip() == key and (ctx.bin / "nnUNetv2_predict").is_file()
    if not reused:
        fresh(ctx.venv)
        run(ctx, [python311(), "-m", "venv", ctx.venv])
        reqs, nodeps = ctx.venv / "amosseg-requirements.txt", ctx.venv / "amosseg-requirements-nodeps.txt"
        reqs.write_text("\n".join([f"torch=={host_torch()}", *PINS]) + "\n")
        nodeps.write_text("\n".join(NODEPS_PINS) + "\n")
        pip = [ctx.bin / "python", "-m", "pip", "install", "--disable-pip-version-check", "-q"]
        run(ctx, [*pip, "-r", reqs])
        run(ctx, [*pip, "--no-deps", "-r", nodeps])
    versions = venv_versions(ctx)
    if versions["nnunetv2"] != OLD_NNUNET:
        raise StepFailed(f"the venv holds nnunetv2 {versions['nnunetv2']}, not {OLD_NNUNET}")
    marker.write_text(key + "\n")
    return {"venv": str(ctx.venv), "key": key, "reused": reused, "versions": versions,
            "trainer": str(install_trainer(ctx))}


# ------------------------------------------------------------------------------------------ data
def zoo_source(ctx: Ctx) -> tuple[Path, str]:
    """The current zoo's phantoms, or the same ones made with its recipe when that zoo is absent."""
    if (ctx.zoo / "nnUNet_raw" / ZOO_DS / "dataset.json").is_file() and (ctx.zoo / "inputs_nnunet").is_dir():
        return ctx.zoo, f"copied from {ctx.zoo}"
    # nnunet_zoo's own data step: same seeds, scale and names, so the same bytes
    made = ctx.out / "extra" / "zoo_data"
    fresh(made)
    nnunet_zoo.step_data(nnunet_zoo.Ctx(made))
    return made, f"made with amoskit.devtools.nnunet_zoo's recipe ({ctx.zoo} has no {ZOO_DS})"


def step_data(ctx: Ctx) -> dict:
    src, how = zoo_source(ctx)
    target = ctx.raw / DATASET
    fresh(target, ctx.out / "inputs", ctx.out / "inputs_nnunet")
    shutil.copytree(src / "nnUNet_raw" / ZOO_DS, target)
    ds = json.loads((target / "dataset.json").read_text())
    write_json(target / "dataset.json", dict(ds, name=DATASET))
    shutil.copytree(src / "inputs", ctx.out / "inputs")
    shutil.copytree(src / "inputs_nnunet", ctx.out / "inputs_nnunet")
    cases = sorted(p.name.removesuffix(".nii.gz") for p in (ctx.out / "inputs").glob("*.nii.gz"))
    if not cases or len(list((ctx.out / "inputs_nnunet").glob("*_0000.nii.gz"))) != len(cases):
        raise StepFailed(f"{src}: inputs/ and inputs_nnunet/ do not hold the same cases")
    return {"source": how, "cases": cases, "training_cases": len(list((target / "imagesTr").glob("*.nii.gz")))}


# ------------------------------------------------------------------------------------- planning
def old_plans_check(plans: dict, where: Path) -> dict:
    """The point of this zoo: no configuration holds `architecture`; 3d_fullres has the old keys."""
    with_arch = [name for name, conf in plans["configurations"].items() if "architecture" in conf]
    if with_arch:
        raise StepFailed(f"{where}: configurations {with_arch} hold 'architecture': not old-style plans")
    conf = plans["configurations"][CONFIGURATION]
    missing = [k for k in OLD_KEYS if k not in conf]
    if missing:
        raise StepFailed(f"{where}: {CONFIGURATION} lacks the old network keys {missing}")
    return {k: conf[k] for k in OLD_KEYS}


def step_plan(ctx: Ctx) -> dict:
    fresh(ctx.preprocessed / DATASET)
    tool(ctx, "nnUNetv2_extract_fingerprint", "-d", DATASET_ID, "-np", "2", "--verify_dataset_integrity")
    tool(ctx, "nnUNetv2_plan_experiment", "-d", DATASET_ID, "-gpu_memory_target", GPU_MEMORY_TARGET,
         "-overwrite_plans_name", PLANS)
    tool(ctx, "nnUNetv2_preprocess", "-d", DATASET_ID, "-plans_name", PLANS, "-c", CONFIGURATION, "-np", "2")
    path = ctx.preprocessed / DATASET / f"{PLANS}.json"
    plans = json.loads(path.read_text())
    return {"plans": str(path), "configurations": sorted(plans["configurations"]),
            "network_keys": old_plans_check(plans, path),
            "patch_size": plans["configurations"][CONFIGURATION]["patch_size"]}


# ------------------------------------------------------------------------------------- training
def step_train(ctx: Ctx) -> dict:
    fold_dir = ctx.model_folder / f"fold_{FOLD}"
    fresh(fold_dir)
    # nnUNet_n_proc_DA=0: augmentation in the trainer's process, no workers to start for 6 iterations;
    # OMP_WAIT_POLICY=PASSIVE: idle torch threads sleep (2 shared cores).
    seconds = tool(ctx, "nnUNetv2_train", DATASET_ID, CONFIGURATION, FOLD, "-tr", TRAINER, "-p", PLANS,
                   "-device", "cpu", extra_env={"ZOO_VALIDATE": "0", "nnUNet_n_proc_DA": "0",
                                                "OMP_WAIT_POLICY": "PASSIVE"})
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        if not (fold_dir / name).is_file():
            raise StepFailed(f"{fold_dir / name} missing after training")
    old_plans_check(json.loads((ctx.model_folder / "plans.json").read_text()), ctx.model_folder / "plans.json")
    return {"seconds": round(seconds, 1), "fold_dir": str(fold_dir)}


# ----------------------------------------------------------------------------------- prediction
def step_predict(ctx: Ctx) -> dict:
    """Old nnUNetv2_predict (2.2.1 has no --disable_progress_bar) on inputs_nnunet/, TTA off."""
    fresh(ctx.reference)
    argv = [ctx.bin / "nnUNetv2_predict", "-i", ctx.out / "inputs_nnunet", "-o", ctx.reference, "-d", DATASET_ID,
            "-p", PLANS, "-tr", TRAINER, "-c", CONFIGURATION, "-f", FOLD, "-chk", CHECKPOINT, "-device", "cpu",
            "--disable_tta", "-npp", "1", "-nps", "1"]
    seconds = run(ctx, argv)
    cases = read_stamp(ctx, "data")["cases"]
    missing = [c for c in cases if not (ctx.reference / f"{c}.nii.gz").is_file()]
    if missing:
        raise StepFailed(f"nnUNetv2_predict wrote no {missing} into {ctx.reference}")
    return {"reference": str(ctx.reference), "command": [str(a) for a in argv], "seconds": round(seconds, 2)}


# ------------------------------------------------------------------------------------- manifest
def step_manifest(ctx: Ctx) -> dict:
    venv, plan, data = read_stamp(ctx, "venv"), read_stamp(ctx, "plan"), read_stamp(ctx, "data")
    predict = read_stamp(ctx, "predict")
    timings = read_timings(ctx)
    manifest = {
        "version": MANIFEST_VERSION, "fingerprint": fingerprint(), "nnunetv2": venv["versions"]["nnunetv2"],
        "versions": venv["versions"], "root": str(ctx.out), "venv": str(ctx.venv),
        "python": str(ctx.bin / "python"), "env": ctx.env(), "torch_force_no_weights_only_load": True,
        "dataset": DATASET, "dataset_id": DATASET_ID, "data_source": data["source"],
        "trainer": TRAINER, "plans": PLANS, "configuration": CONFIGURATION, "checkpoint": CHECKPOINT,
        "model_folder": str(ctx.model_folder), "folds": [FOLD],
        "unet_class_name": plan["network_keys"]["UNet_class_name"], "network_keys": plan["network_keys"],
        "patch_size": plan["patch_size"], "configurations": plan["configurations"],
        "inputs": str(ctx.out / "inputs"), "inputs_nnunet": str(ctx.out / "inputs_nnunet"), "cases": data["cases"],
        "reference": predict["reference"], "predict_command": predict["command"],
        "predict_seconds": predict["seconds"],
        "step_seconds": timings, "build_seconds": round(sum(timings.values()), 1),
    }
    write_json(ctx.out / "old_zoo.json", manifest)
    return {}


# ---------------------------------------------------------------------------------------- steps
@dataclass(frozen=True)
class Step:
    name: str
    title: str
    run: Callable[[Ctx], dict]


STEPS = [
    Step("venv", f"venv with nnunetv2=={OLD_NNUNET}", step_venv),
    Step("data", f"phantoms -> {DATASET}", step_data),
    Step("plan", f"plan + preprocess {DATASET_ID} {CONFIGURATION} (old plans)", step_plan),
    Step("train", f"train {CONFIGURATION} fold {FOLD} (6 iterations, CPU)", step_train),
    Step("predict", f"nnUNetv2_predict {OLD_NNUNET} -> reference/{REFERENCE}", step_predict),
    Step("manifest", "old_zoo.json", step_manifest),
]


def fingerprint() -> str:
    """What invalidates the built folders: this builder and the trainer (the venv: venv_key)."""
    h = hashlib.sha256()
    for part in (Path(__file__).read_bytes(), TRAINER_SRC.read_bytes()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def stamp_path(ctx: Ctx, name: str) -> Path:
    return ctx.done / f"{name}.json"


def read_stamp(ctx: Ctx, name: str) -> dict:
    return json.loads(stamp_path(ctx, name).read_text())


def read_timings(ctx: Ctx) -> dict[str, float]:
    path = ctx.done / "timings.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def prepare_out(ctx: Ctx, fp: str) -> None:
    """Wipe what another builder made (keeping the venv, which has its own key); refuse a folder
    that is no old zoo."""
    marker = ctx.done / "fingerprint"
    if ctx.out.exists() and any(ctx.out.iterdir()):
        if not ctx.done.is_dir():
            raise SystemExit(f"nnunet_old_zoo: {ctx.out} is not empty and holds no old zoo (.done/): "
                             f"refusing to overwrite it")
        if marker.is_file() and marker.read_text().strip() == fp:
            return
        say(f"fingerprint changed: rebuilding {ctx.out} (the venv stays if its pins did not change)")
        for p in ctx.out.iterdir():
            if p.name != "venv":
                fresh(p)
    ctx.done.mkdir(parents=True, exist_ok=True)
    (ctx.out / "logs").mkdir(exist_ok=True)
    marker.write_text(fp + "\n")


def pending_steps(ctx: Ctx) -> list[Step]:
    """Steps run in order, so the finished ones are a prefix; the first gap reruns all after it."""
    for i, step in enumerate(STEPS):
        if not stamp_path(ctx, step.name).is_file():
            for later in STEPS[i:]:
                stamp_path(ctx, later.name).unlink(missing_ok=True)
            return STEPS[i:]
    return []


def run_step(ctx: Ctx, step: Step) -> float:
    ctx.log = ctx.out / "logs" / f"{step.name}.log"
    ctx.log.write_text(f"# {step.title}\n")
    t0 = time.perf_counter()
    record = step.run(ctx)
    seconds = time.perf_counter() - t0
    write_json(ctx.done / "timings.json", {**read_timings(ctx), step.name: round(seconds, 1)})
    write_json(stamp_path(ctx, step.name), record)
    return seconds


def last_error_line(log: Path | None) -> str:
    """The log's last line that looks like an error (a traceback's last line), else its last line."""
    if not log or not log.is_file():
        return ""
    lines = [line.rsplit("\r", 1)[-1].strip() for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith(("[exit ", "$ "))]
    errors = [line for line in lines if "Error" in line.split(":", 1)[0] or line.startswith("ERROR")]
    return (errors or lines or [""])[-1][:300]


def say(msg: str) -> None:
    print(f"old zoo: {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def exclusive(out: Path):
    """One builder per folder at a time (a test session and a developer may race): the second waits."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{out.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def build(out: Path, zoo: Path = DEFAULT_ZOO) -> int:
    ctx = Ctx(out.resolve(), zoo=zoo.resolve())
    with exclusive(ctx.out):
        prepare_out(ctx, fingerprint())
        todo = pending_steps(ctx)
        if not todo:
            say(f"up to date ({len(STEPS)} steps cached): {ctx.out / 'old_zoo.json'}")
            return 0
        t_all = time.perf_counter()
        for step in todo:
            say(f"{step.title} ...")
            try:
                seconds = run_step(ctx, step)
            except Exception as err:  # a tool failed, or nnU-Net left something out or wrong
                detail = last_error_line(ctx.log)
                say(f"✗ {step.title}: {err}{f' ({detail})' if detail and detail not in str(err) else ''}; "
                    f"log: {ctx.log}")
                return 1
            say(f"✓ {step.title} ({seconds:.0f} s)")
        say(f"built in {time.perf_counter() - t_all:.0f} s: {ctx.out / 'old_zoo.json'}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "nnunet-old-zoo",
                    help="old zoo folder (default: %(default)s)")
    ap.add_argument("--zoo", type=Path, default=DEFAULT_ZOO,
                    help="the current zoo whose phantoms are copied (default: %(default)s)")
    a = ap.parse_args(argv)
    return build(a.out, a.zoo)


if __name__ == "__main__":
    sys.exit(main())
