"""Pick the compute device and cap GPU memory to what the organisers' card has.

Why: a run on a bigger GPU must prove the model fits the organisers' 24 GB RTX 3090, and the log
must say plainly whether the container saw a GPU at all (their `--gpus 0` may hide it).
"""
from __future__ import annotations

import os

import torch


def choose() -> torch.device:
    if os.environ.get("FORCE_CPU") == "1" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", 0)


def describe(device: torch.device) -> str:
    cuda = torch.cuda.is_available()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return (f"device: cuda {name} (CUDA available: True) torch {torch.__version__} "
                f"CUDA {torch.version.cuda} cuDNN {torch.backends.cudnn.version()}")
    return f"device: cpu (CUDA available: {cuda}) torch {torch.__version__} threads {torch.get_num_threads()}"


def cap_gpu_memory(device: torch.device, limit_gb: str | None) -> str | None:
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
    return (f"GPU memory capped at {limit_gb} GB: allocator {allowed / 1024**3:.2f} GiB "
            f"(context {context / 1024**3:.2f} GiB, card {total / 1024**3:.1f} GiB)")
