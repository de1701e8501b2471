"""The fast engine behind the runner: our torch pipeline (model.py, predictor.py) for every model it knows.

Why: the runner owns the contract (folders, order, errors, metrics, atomic writes); an engine owns
only how one case becomes a label map. This one preprocesses on the device, batches tiles and
falls back from GPU to CPU on out-of-memory; nnunet_engine.py is the exact alternative.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import device as devices
from .model import load_model
from .nifti_io import read_case, write_label
from .predictor import predict_with_fallback, preprocess


class FastEngine:
    name = "fast"

    def __init__(self, model_dir: Path, folds, checkpoint: str, batch_size: int | None):
        self.pipeline = load_model(model_dir, folds, checkpoint)  # on the CPU; raises UnsupportedModel
        self.batch_size = batch_size

    def set_batches(self, dev) -> int:
        """Tiles per forward for every model (BATCH_SIZE or the device's default); the last member's."""
        for m in self.pipeline.models:
            m.batch = self.batch_size or devices.default_batch_size(m.networks, m.patch_size, dev)
        return self.pipeline.members[-1].batch

    def estimate_bytes(self, size_xyz, spacing_xyz, on_gpu: bool) -> int:
        """Peak host memory for one case: input copies, target-grid data and (on CPU) logits and activations,
        for the most demanding model of the pipeline (an ensemble adds its probability sums)."""
        pipeline = self.pipeline
        n = int(np.prod(size_xyz[:3]))
        spacing_zyx = tuple(spacing_xyz[:3])[::-1]
        worst = 0
        for model in pipeline.models:
            sp = [spacing_zyx[i] for i in model.transpose_forward]
            m = int(n * float(np.prod([s / t for s, t in zip(sp, model.target_spacing(sp))])))
            per_target = 4 * (1 + len(model.stage_labels)) + (0 if on_gpu else 4 * model.num_classes + 8)
            activations = 0 if on_gpu else devices.cpu_activation_bytes(model.networks, model.patch_size,
                                                                        model.batch or 1)
            worst = max(worst, m * per_target + activations)
        per_input = 4 + 4 + 4 + 2 + 1 + 1 + (0 if on_gpu else 4 * 4 + 8)
        if len(pipeline.members) > 1 and not on_gpu:
            per_input += 2 * 4 * max(m.num_classes for m in pipeline.members)
        return n * per_input + worst + 256 * 1024**2

    def read(self, path: Path):
        t0 = time.perf_counter()
        case = read_case(path)
        case.read_seconds = time.perf_counter() - t0
        return case

    def prepare(self, case, dev):
        """The first model's preprocessing (cascades and ensembles prepare their other models later)."""
        prep = preprocess(case.array, case.spacing, self.pipeline.first, dev)
        prep.seconds["read"] = case.read_seconds
        case.shape = case.array.shape
        if self.pipeline.simple:
            case.array = None
        return prep

    @staticmethod
    def target_shape(prep) -> list:
        return list(prep.data.shape[1:])

    def to_device(self, dev) -> None:
        for net in self.pipeline.networks:
            net.to(dev)

    def describe(self, tta: bool, model_dir: Path, threads: int) -> list[str]:
        lines = []
        for m in self.pipeline.models:
            mirroring = f"on ({len(m.mirror_axes)} mirror axes)" if tta and m.mirror_axes else "off"
            lines.append(f"model: {m.description}; patch {list(m.patch_size)}, spacing {list(m.spacing)}, "
                         f"TTA {mirroring}, batch {m.batch}")
        lines.append(f"model: {self.pipeline.description} from {model_dir}; {threads} CPU threads")
        return lines

    def predict(self, case, prep, dev, tta: bool):
        """(labels, seconds, mode) for one prepared case."""
        return predict_with_fallback(prep, self.pipeline, dev, tta, self.batch_size, case.array, case.spacing)

    @staticmethod
    def write(labels, case, out_path: Path) -> None:
        write_label(labels, case.reference, out_path)
