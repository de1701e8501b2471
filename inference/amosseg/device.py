"""Pick the compute device and cap GPU memory to what the organisers' card has.

Why: a run on a bigger GPU must prove the model fits the organisers' 24 GB RTX 3090, and the log
must say plainly whether the container saw a GPU at all (their `--gpus 0` may hide it).
"""
from __future__ import annotations

import math

import torch


def choose(force_cpu: bool = False) -> torch.device:
    if force_cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0)


def describe(device: torch.device) -> str:
    cuda = torch.cuda.is_available()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (f"device: cuda {name} (CUDA available: True) torch {torch.__version__} "
                f"CUDA {torch.version.cuda} cuDNN {torch.backends.cudnn.version()}")
    return f"device: cpu (CUDA available: {cuda}) torch {torch.__version__} threads {torch.get_num_threads()}"


def cap_gpu_memory(device: torch.device, limit_gb: float | None) -> str | None:
    """Limit torch's allocator to limit_gb minus the CUDA context already in use; returns a log line."""
    if device.type != "cuda" or not limit_gb:
        return None
    torch.cuda.init()
    torch.empty(1, device=device)  # create the context so it can be measured
    free, total = torch.cuda.mem_get_info(device)
    context = total - free - torch.cuda.memory_reserved(device)
    allowed = max(0.0, float(limit_gb) * 1024**3 - context)
    fraction = min(1.0, allowed / total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return (f"GPU memory capped at {limit_gb:g} GB: allocator {allowed / 1024**3:.2f} GiB "
            f"(context {context / 1024**3:.2f} GiB, card {total / 1024**3:.1f} GiB)")


# CPU: tiles per forward such that tiles x patch voxels x first-stage features stays under this.
# Measured on 2 cores: the demo model (16x80x80 patch, 8 features) runs 4x faster per tile in
# batches of 4 than one by one; the AMOS-sized model (64x160x192, 32 features) runs at the same
# speed per tile either way, but 2 tiles at once cost 1.5 GiB more peak RSS than one.
CPU_BATCH_BUDGET = 16 * 1024**2


def default_batch_size(networks, patch_size, device: torch.device) -> int:
    """Tiles per forward (BATCH_SIZE overrides): 4 on a GPU; on the CPU as many (1..4) as keep activations
    small. The first 5-D parameter is taken as the stem conv (true for nnU-Net's UNets); a frozen
    TorchScript model exposes none, and is assumed to start with 32 features."""
    if device.type == "cuda":
        return 4
    return max(1, min(4, CPU_BATCH_BUDGET // (math.prod(patch_size) * stem_features(networks))))


def stem_features(networks) -> int:
    """Output channels of the first 3-D convolution: what sizes a UNet's largest activations."""
    return next((p.shape[0] for net in networks for p in net.parameters() if p.ndim in (4, 5)), 32)


# Host bytes of activations per (tile x patch voxel x stem feature) on the CPU in inference mode,
# measured with the AMOS-sized PlainConvUNet (64x160x192 patch, 32 features) on a 2-tile case: a
# second tile per forward added 1.58 GiB of peak RSS (1.95 GiB above the process at batch 1, 3.53
# at batch 2) = 27 bytes; 32 leaves a margin (an OOM kill cannot be caught, a refusal can).
ACTIVATION_BYTES = 32


def cpu_activation_bytes(networks, patch_size, batch: int) -> int:
    """Peak activation memory of one forward on the CPU (for the host-memory admission check)."""
    return batch * math.prod(patch_size) * stem_features(networks) * ACTIVATION_BYTES
