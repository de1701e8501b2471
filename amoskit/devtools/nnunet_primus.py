"""A real nnUNet_Primus_S_Trainer results folder, and nnUNetv2_predict's answer for it, in its own venv.

Why: Primus networks (dynamic-network-architectures' Primus, built by nnU-Net's primus trainers)
import timm, and timm imports torchvision, whose compiled operators load only beside the torch they
were built for. The project's venv has the local CPU torch 2.13.0, beside which PyPI's torchvision
fails ('operator torchvision::nms does not exist'); the release pair on this machine's disk is torch
2.14.1 + torchvision 0.29.1 (a CUDA build, which runs on the CPU). So this builds its own venv
(nnunetv2 2.8.1 with all its requirements, timm included), as a user's full nnU-Net install is.

Steps, each logged to `<out>/build.log`:
1. venv `<out>/venv`: torch 2.14.1, torchvision 0.29.1, nnunetv2 2.8.1 (skipped when present);
2. data: the zoo's Dataset901_ZooLabels (`amoskit.devtools.nnunet_zoo`: plans, preprocessed
   3d_fullres, its 3 test inputs) copied, with the plans `nnUNetPlans_zooPrimus`: the zoo's plans
   with 3d_fullres' patch rounded up to multiples of 8 (Primus embeds 8x8x8 patches and crashes on
   other sizes; users of Primus edit their plans the same way);
3. train: 3d_fullres fold 0 with `nnUNetTrainer_zooPrimusS` (nnUNet_Primus_S_Trainer with the zoo's
   few iterations), then the folder and the checkpoints' trainer_name named nnUNet_Primus_S_Trainer;
4. reference: nnUNetv2_predict with test-time mirroring as the checkpoint allows (nnU-Net's
   default, as the organisers' run does), into `<out>/reference`;
5. `<out>/primus.json`: the model folder, inputs, reference, seconds per step.

    python -m amoskit.devtools.nnunet_primus [--zoo .cache/nnunet-zoo] [--out .cache/nnunet-primus]
    make wheelhouse build run TORCH_VERSION=2.14.1 TORCH_INDEX_URL= WHEELHOUSE=wheelhouse-2.14.1 \
        WEIGHTS=<model_folder> FOLDS=0 INPUT=<inputs> OUTPUT=primus-out
    python -m amoskit.devtools.nnunet_primus --compare primus-out   (equal to nnU-Net's answer: exit 0)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amoskit import REPO

TORCH, TORCHVISION, NNUNET = "2.14.1", "0.29.1", "2.8.1"
TRAINED_AS, NAME = "nnUNetTrainer_zooPrimusS", "nnUNet_Primus_S_Trainer"
HERE = Path(__file__).parent
TRAINERS = [HERE / "nnUNetTrainer_zoo.py", HERE / f"{TRAINED_AS}.py"]
DATASET, DATASET_ID, ZOO_PLANS, PLANS = "Dataset901_ZooLabels", "901", "nnUNetPlans_zoo", "nnUNetPlans_zooPrimus"
CONFIGURATION, FOLD = "3d_fullres", 0


def run(argv: list, env: dict, log: Path) -> float:
    argv = [str(a) for a in argv]
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        t0 = time.perf_counter()
        rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
    if rc != 0:
        raise SystemExit(f"error: {Path(argv[0]).name} exited {rc} (log: {log})")
    return round(time.perf_counter() - t0, 1)


def make_venv(venv: Path, log: Path) -> float:
    if (venv / ".primus-venv").is_file():
        return 0.0
    t0 = time.perf_counter()
    run([sys.executable, "-m", "venv", "--clear", venv], dict(os.environ), log)
    run([venv / "bin" / "pip", "install", f"torch=={TORCH}", f"torchvision=={TORCHVISION}", f"nnunetv2=={NNUNET}"],
        dict(os.environ), log)
    (venv / ".primus-venv").write_text(f"torch=={TORCH} torchvision=={TORCHVISION} nnunetv2=={NNUNET}\n")
    return round(time.perf_counter() - t0, 1)


def primus_plans(plans: dict) -> dict:
    """The zoo's plans with 3d_fullres' patch rounded up to multiples of 8, under their own name."""
    plans = json.loads(json.dumps(plans))
    plans["plans_name"] = PLANS
    conf = plans["configurations"][CONFIGURATION]
    conf["patch_size"] = [-(-s // 8) * 8 for s in conf["patch_size"]]
    return plans


def copy_data(zoo: Path, out: Path) -> dict:
    raw, pre = out / "nnUNet_raw", out / "nnUNet_preprocessed"
    for p in (raw, pre):
        shutil.rmtree(p, ignore_errors=True)
    (raw / DATASET).mkdir(parents=True)
    shutil.copy(zoo / "nnUNet_raw" / DATASET / "dataset.json", raw / DATASET / "dataset.json")
    src = zoo / "nnUNet_preprocessed" / DATASET
    dst = pre / DATASET
    dst.mkdir(parents=True)
    for name in ("dataset.json", "dataset_fingerprint.json", f"{ZOO_PLANS}.json"):
        shutil.copy(src / name, dst / name)
    shutil.copytree(src / "gt_segmentations", dst / "gt_segmentations")
    plans = json.loads((src / f"{ZOO_PLANS}.json").read_text())
    data_id = plans["configurations"][CONFIGURATION]["data_identifier"]
    shutil.copytree(src / data_id, dst / data_id)
    plans = primus_plans(plans)
    (dst / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))
    return {"patch_size": plans["configurations"][CONFIGURATION]["patch_size"]}


def install_trainers(venv: Path) -> None:
    top = next((venv / "lib").glob("python3*/site-packages/nnunetv2/training/nnUNetTrainer"))
    for src in TRAINERS:
        shutil.copyfile(src, top / src.name)


def rename_trainer(venv: Path, folder: Path, env: dict, log: Path) -> None:
    """Each checkpoint's trainer_name becomes nnUNet_Primus_S_Trainer (what nnU-Net's predictor looks up)."""
    code = ("import sys, torch\n"
            "for p in sys.argv[1:]:\n"
            "    s = torch.load(p, map_location='cpu', weights_only=False)\n"
            f"    s['trainer_name'] = {NAME!r}\n"
            "    torch.save(s, p)\n")
    run([venv / "bin" / "python", "-c", code, *sorted(folder.glob("fold_*/checkpoint_*.pth"))], env, log)


def build(zoo: Path, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    log, venv, results = out / "build.log", out / "venv", out / "results"
    seconds = {"venv": make_venv(venv, log)}
    record = copy_data(zoo, out)
    install_trainers(venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(nnUNet_raw=str(out / "nnUNet_raw"), nnUNet_preprocessed=str(out / "nnUNet_preprocessed"),
               nnUNet_results=str(results), nnUNet_compile="f", nnUNet_n_proc_DA="0", nnUNet_def_n_proc="2",
               ZOO_VALIDATE="0", MPLBACKEND="Agg", PYTHONUNBUFFERED="1", VIRTUAL_ENV=str(venv),
               PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    shutil.rmtree(results, ignore_errors=True)
    seconds["train"] = run([venv / "bin" / "nnUNetv2_train", DATASET_ID, CONFIGURATION, FOLD, "-tr", TRAINED_AS,
                            "-p", PLANS, "-device", "cpu"], env, log)
    trained = results / DATASET / f"{TRAINED_AS}__{PLANS}__{CONFIGURATION}"
    folder = trained.with_name(f"{NAME}__{PLANS}__{CONFIGURATION}")
    trained.rename(folder)
    rename_trainer(venv, folder, env, log)
    reference = out / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    seconds["nnunet_predict"] = run([venv / "bin" / "nnUNetv2_predict", "-i", zoo / "inputs_nnunet", "-o", reference,
                                     "-d", DATASET_ID, "-p", PLANS, "-tr", NAME, "-c", CONFIGURATION, "-f", FOLD,
                                     "-device", "cpu", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env, log)
    record.update(model_folder=str(folder), folds=str(FOLD), trainer=NAME, inputs=str(zoo / "inputs"),
                  reference=str(reference), venv=str(venv), seconds=seconds,
                  versions={"torch": TORCH, "torchvision": TORCHVISION, "nnunetv2": NNUNET})
    (out / "primus.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def compare(output: Path, reference: Path) -> bool:
    """Each reference case against OUTPUT's: same geometry, every voxel equal (nnU-Net's predictor on both sides)."""
    import SimpleITK as sitk
    refs, same = sorted(reference.glob("*.nii.gz")), True
    for ref in refs:
        if not (output / ref.name).is_file():
            print(f"{ref.name}: missing in {output}")
            same = False
            continue
        ours, theirs = sitk.ReadImage(str(output / ref.name)), sitk.ReadImage(str(ref))
        geometry = all(getattr(ours, g)() == getattr(theirs, g)() for g in
                       ("GetSize", "GetSpacing", "GetOrigin", "GetDirection"))
        a, b = sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(theirs)
        agree = float((a == b).mean()) if geometry else 0.0
        print(f"{ref.name}: geometry {'same' if geometry else 'DIFFERENT'}, {100 * agree:.4f} % of {a.size} voxels "
              f"equal, {len(set(b.ravel().tolist()))} labels in nnU-Net's answer")
        same &= geometry and agree == 1.0
    return same and bool(refs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=REPO / ".cache" / "nnunet-zoo", help="the zoo (make nnunet-zoo)")
    ap.add_argument("--out", type=Path, default=REPO / ".cache" / "nnunet-primus")
    ap.add_argument("--compare", type=Path, metavar="OUTPUT",
                    help="compare the image's OUTPUT with nnU-Net's answer of an earlier build (exit 1 if not equal)")
    args = ap.parse_args(argv)
    if args.compare:
        record = json.loads((args.out / "primus.json").read_text())
        return 0 if compare(args.compare, Path(record["reference"])) else 1
    print(json.dumps(build(args.zoo.resolve(), args.out.resolve()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
