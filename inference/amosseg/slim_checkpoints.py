"""Drop the training state from nnU-Net checkpoints: keep only what inference reads.

Why: nnU-Net's checkpoint_*.pth also carries the optimizer's momentum buffers, the grad scaler
and the training log, about as large again as the network's weights; a submission ships none of
that. Run where torch is: the image's build (docker/Dockerfile.runtime's `weights` stage, on the
builder image), never on the host, whose tools stay torch-free.

    python slim_checkpoints.py FOLDER    (rewrites every checkpoint_*.pth under FOLDER in place)
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

# what nnU-Net's predictor and our engine read from a checkpoint
KEEP = ("network_weights", "init_args", "trainer_name", "inference_allowed_mirroring_axes")


def slim(path: Path) -> tuple[int, int]:
    """Rewrite one checkpoint with KEEP only (atomically); returns (bytes before, bytes after)."""
    before = path.stat().st_size
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or "network_weights" not in ckpt or set(ckpt) <= set(KEEP):
        return before, before
    tmp = path.with_name(f".{path.name}.slim")
    torch.save({k: ckpt[k] for k in KEEP if k in ckpt}, tmp)
    os.replace(tmp, path)
    return before, path.stat().st_size


def main(folder: str) -> int:
    total_before = total_after = 0
    for path in sorted(Path(folder).rglob("checkpoint_*.pth")):
        before, after = slim(path)
        total_before += before
        total_after += after
        print(f"{path.relative_to(folder)}: {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB")
    print(f"checkpoints: {total_before / 1e6:.1f} MB -> {total_after / 1e6:.1f} MB (training state dropped)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
