"""Every environment variable the engine honours, read and checked once at start-up.

Why: a typo such as BATCH_SIZE=abc or TTA=maybe should stop the run before any work with one line
naming the variable and the fix, not surface as a traceback halfway through; and the rest of the
engine takes plain values, so what a run may be told lives in this one place. Torch-free.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# name -> meaning (the engine's whole environment contract)
VARIABLES = {
    "INPUT_DIR": "folder of *.nii.gz cases (default: the first of /workspace/input, /input, ./input holding one)",
    "OUTPUT_DIR": "folder for the label maps (default: the input folder's partner)",
    "MODEL_DIR": "model folder (default: weights/ beside run_inference.py, else the repository's weights/)",
    "ENGINE": "fast (default: our engine) or nnunet (nnU-Net's own predictor, exact; needs an image built "
              "with make build ENGINE=nnunet)",
    "FOLDS": "folds to ensemble, e.g. '0,1', or 'all' for fold_all (default: nnU-Net's choice, every fold_N "
             "but fold_all; fold_all when it is the only one)",
    "CHECKPOINT": "checkpoint file each fold loads (default checkpoint_final.pth; checkpoint_best.pth too)",
    "TTA": "1: mirroring test-time augmentation (default), 0: off",
    "BATCH_SIZE": "tiles per forward (default: 4 on a GPU, 1..4 on the CPU by model size)",
    "TORCH_THREADS": "CPU threads for torch (default: the CPUs the container may use)",
    "GPU_MEMORY_LIMIT_GB": "cap torch's GPU memory at this many GB, context included (default: no cap)",
    "FORCE_CPU": "1: run on the CPU even when a GPU is visible (default 0)",
    "CUDNN_BENCHMARK": "1: autotuned cuDNN convolutions (default), 0: off",
    "METRICS_FILE": "write the run's metrics JSON here (default: none; never inside the output folder)",
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def usage() -> str:
    """What `python run_inference.py --help` prints: the folders it reads and writes, every variable."""
    from .folders import CANDIDATES
    pairs = ", ".join(f"{i} -> {o}" for i, o in CANDIDATES)
    width = max(map(len, VARIABLES))
    lines = ["usage: python run_inference.py   (no arguments: the organisers' command)", "",
             "Segments every *.nii.gz in the input folder into a same-named uint8 label map in the output folder.",
             f"Folders: the first input holding a *.nii.gz of {pairs}; INPUT_DIR / OUTPUT_DIR override.", "",
             "Environment variables (empty = unset):"]
    lines += [f"  {name.ljust(width)}  {text}" for name, text in VARIABLES.items()]
    lines += ["", "Exit status: 0 every case written, 1 some failed (each named in one line), 2 nothing could start."]
    return "\n".join(lines)


class SettingsError(ValueError):
    """A variable holds a value the engine cannot use: the message names it and the fix."""


@dataclass(frozen=True)
class Settings:
    input_dir: Path | None = None
    output_dir: Path | None = None
    model_dir: Path = Path("weights")
    engine: str = "fast"
    folds: tuple[str, ...] | None = None    # None: nnU-Net's default choice
    checkpoint: str = "checkpoint_final.pth"
    tta: bool = True
    batch_size: int | None = None           # None: the device's default
    torch_threads: int | None = None        # None: usable_cpus()
    gpu_memory_limit_gb: float | None = None
    force_cpu: bool = False
    cudnn_benchmark: bool = True
    metrics_file: Path | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str], script_dir: Path) -> Settings:
        """Read the variables of `env` (empty = unset); raises SettingsError on an unusable value."""
        def get(name):
            value = (env.get(name) or "").strip()
            return value or None

        path = lambda name: Path(env[name]) if get(name) else None  # noqa: E731 - paths as given, unstripped
        return cls(
            input_dir=path("INPUT_DIR"), output_dir=path("OUTPUT_DIR"),
            model_dir=path("MODEL_DIR") or default_model_dir(script_dir),
            engine=_engine(get("ENGINE")),
            folds=parse_folds(get("FOLDS")),
            checkpoint=_checkpoint(get("CHECKPOINT")),
            tta=_flag("TTA", get("TTA"), True, "TTA=1 (mirroring on) or TTA=0 (off)"),
            batch_size=_count("BATCH_SIZE", get("BATCH_SIZE"), "tiles per forward"),
            torch_threads=_count("TORCH_THREADS", get("TORCH_THREADS"), "CPU threads"),
            gpu_memory_limit_gb=_gigabytes(get("GPU_MEMORY_LIMIT_GB")),
            force_cpu=_flag("FORCE_CPU", get("FORCE_CPU"), False, "FORCE_CPU=1 (CPU only) or FORCE_CPU=0"),
            cudnn_benchmark=_flag("CUDNN_BENCHMARK", get("CUDNN_BENCHMARK"), True,
                                  "CUDNN_BENCHMARK=1 (autotune) or CUDNN_BENCHMARK=0 (off)"),
            metrics_file=path("METRICS_FILE"),
        )


def default_model_dir(script_dir: Path) -> Path:
    """`weights/` next to run_inference.py (the image), else the repository's `weights/`."""
    for cand in (script_dir / "weights", script_dir.parent / "weights"):
        if cand.is_dir():
            return cand
    return script_dir / "weights"


ENGINES = ("fast", "nnunet")


def _engine(value: str | None) -> str:
    engine = (value or "fast").lower()
    if engine not in ENGINES:
        raise SettingsError(f"ENGINE={value!r} is not an engine; set ENGINE=fast (default) or ENGINE=nnunet")
    return engine


def _checkpoint(value: str | None) -> str:
    if value is None:
        return "checkpoint_final.pth"
    if not re.fullmatch(r"[\w.-]+\.pth", value):
        raise SettingsError(f"CHECKPOINT={value!r} is not a checkpoint file name; set "
                            f"CHECKPOINT=checkpoint_best.pth (or checkpoint_final.pth, the default)")
    return value


def parse_folds(value: str | None) -> tuple[str, ...] | None:
    """'0,1' or '0 1' -> ('0', '1'); None or blank -> None (every fold)."""
    folds = tuple(f for f in re.split(r"[ ,]+", value or "") if f)
    return folds or None


def _flag(name: str, value: str | None, default: bool, fix: str) -> bool:
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r} is not 0 or 1; set {fix}, or leave it unset")


def _count(name: str, value: str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise SettingsError(f"{name}={value!r} is not a whole number >= 1; set {name} to the number of "
                            f"{what} (e.g. {name}=2), or leave it unset for the default")
    return n


def _gigabytes(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        gb = float(value)
    except ValueError:
        gb = 0.0
    if not gb > 0 or gb == float("inf"):
        raise SettingsError(f"GPU_MEMORY_LIMIT_GB={value!r} is not a positive number of GB; set e.g. "
                            "GPU_MEMORY_LIMIT_GB=24 (the organisers' card), or leave it unset for no cap")
    return gb
