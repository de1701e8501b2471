"""A real nnUNetTrainerBN results folder in minutes, and nnUNetv2_predict's answer for it.

Why: nnU-Net's own trainers that build their own network are recognised by name, and the image then
runs nnU-Net's predictor with nnU-Net's module (no TRAINER_CODE). Testing that needs a folder such a
trainer wrote. nnUNetTrainerBN trains 1000 epochs; `nnUNetTrainer_zooBN` is nnUNetTrainerBN with the
zoo's schedule, trained here on the zoo's preprocessed 3d_fullres data (`amoskit.devtools.nnunet_zoo`,
whose folders and trainer this reuses); the folder and the checkpoints' trainer_name are then named
nnUNetTrainerBN, whose network and inference they are. nnUNetv2_predict gives the reference (TTA
off). Cached beside the zoo, keyed by the zoo's fingerprint and this builder.

    python -m amoskit.devtools.nnunet_own_trainer [--zoo .cache/nnunet-zoo]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amoskit.devtools import nnunet_zoo

TRAINER_SRC = Path(__file__).with_name("nnUNetTrainer_zooBN.py")
TRAINED_AS = "nnUNetTrainer_zooBN"
NAME = "nnUNetTrainerBN"
CONFIGURATION = "3d_fullres"
FOLD = 0


def fingerprint(zoo: dict) -> str:
    h = hashlib.sha256(zoo["fingerprint"].encode())
    for part in (Path(__file__).read_bytes(), TRAINER_SRC.read_bytes()):
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def install_trainers() -> None:
    """The zoo's trainer and ours at the top of nnunetv2/training/nnUNetTrainer (nnU-Net's lookup
    finds them there before it imports primus, which needs timm)."""
    top = nnunet_zoo.install_trainer().parent
    target = top / TRAINER_SRC.name
    if not target.is_file() or target.read_bytes() != TRAINER_SRC.read_bytes():
        shutil.copyfile(TRAINER_SRC, target)


def run(argv: list, env: dict, log: Path) -> None:
    argv = [str(nnunet_zoo.BIN / argv[0]), *map(str, argv[1:])]
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(argv)}\n")
        f.flush()
        rc = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT, env=env)
    if rc != 0:
        raise RuntimeError(f"{Path(argv[0]).name} exited {rc} (log: {log})")


def rename_trainer(folder: Path) -> None:
    """Each checkpoint's trainer_name becomes nnUNetTrainerBN (what nnU-Net's predictor looks up)."""
    import torch
    for ckpt in folder.glob("fold_*/checkpoint_*.pth"):
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        state["trainer_name"] = NAME
        torch.save(state, ckpt)


def build(zoo: dict, out: Path | None = None) -> dict:
    """{model_folder, folds, reference, ...}: trained and predicted once, then read from bn.json."""
    out = out or Path(zoo["root"]) / "own_trainer_bn"
    record_path, fp = out / "bn.json", fingerprint(zoo)
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        if record.get("fingerprint") == fp and Path(record["model_folder"]).is_dir():
            return record
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    install_trainers()
    labels = zoo["datasets"]["labels"]
    results, log = out / "results", out / "build.log"
    env = {**os.environ, **zoo["env"], "nnUNet_results": str(results), "nnUNet_compile": "f",
           "nnUNet_n_proc_DA": "0", "nnUNet_def_n_proc": "2", "ZOO_VALIDATE": "0",
           "OMP_WAIT_POLICY": "PASSIVE", "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    run(["nnUNetv2_train", labels["id"], CONFIGURATION, FOLD, "-tr", TRAINED_AS, "-p", nnunet_zoo.PLANS,
         "-device", "cpu"], env, log)
    trained = results / labels["name"] / f"{TRAINED_AS}__{nnunet_zoo.PLANS}__{CONFIGURATION}"
    folder = trained.with_name(f"{NAME}__{nnunet_zoo.PLANS}__{CONFIGURATION}")
    trained.rename(folder)
    rename_trainer(folder)
    train_seconds = time.perf_counter() - t0
    reference = out / "reference"
    t0 = time.perf_counter()
    run(["nnUNetv2_predict", "-i", zoo["inputs_nnunet"], "-o", reference, "-d", labels["id"], "-p",
         nnunet_zoo.PLANS, "-tr", NAME, "-c", CONFIGURATION, "-f", FOLD, "-chk", nnunet_zoo.CHECKPOINT,
         "-device", "cpu", "--disable_tta", "--disable_progress_bar", "-npp", "1", "-nps", "1"], env, log)
    record = {"fingerprint": fp, "model_folder": str(folder), "folds": str(FOLD), "trainer": NAME,
              "reference": str(reference), "train_seconds": round(train_seconds, 1),
              "nnunet_seconds": round(time.perf_counter() - t0, 1)}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=Path(".cache/nnunet-zoo"))
    args = ap.parse_args(argv)
    from amoskit.bench import nnunet_kinds
    record = build(nnunet_kinds.load_zoo(args.zoo))
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
