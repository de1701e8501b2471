"""What `make build` prints at the end: the image's facts, torch/CUDA inside, and the size check.

The facts come from the built image itself (inspect, history, and a probe run inside it with the
network off), not from the build arguments, so the table shows what will actually ship.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from amoskit import contract

SIZE_LIMIT = 0.02  # runtime image at most 2% larger than base + /opt/venv + weights + code

# Runs inside the image: torch build facts and the bytes under /opt/venv, counted the way the
# engine sizes a layer (regular files and links by their own size, hard links once).
PROBE = r"""
import json, os, sys
def tree_bytes(top):
    seen, total = set(), 0
    for dirpath, dirnames, filenames in os.walk(top):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total
info = {"python": sys.version.split()[0], "executable": sys.executable,
        "venv_bytes": tree_bytes("/opt/venv"),
        "weights_bytes": tree_bytes(os.environ.get("MODEL_DIR") or "/workspace/weights")}
try:
    import torch
    info["torch"] = torch.__version__
    info["cuda"] = torch.version.cuda
    flags = getattr(torch._C, "_cuda_getArchFlags", lambda: "")() or ""
    info["arch"] = flags.split() if flags else torch.cuda.get_arch_list()
    try:
        info["cudnn"] = torch.backends.cudnn.version() if torch.version.cuda else None
    except Exception:
        info["cudnn"] = None
except Exception as exc:
    info["torch_error"] = repr(exc)
print(json.dumps(info))
"""

# Minimum NVIDIA driver (Linux) per CUDA major.minor of the torch build, from NVIDIA's CUDA
# compatibility tables: within a major version, minor-version compatibility lets the oldest
# driver of that major run it (kernels needing newer PTX JIT aside).
DRIVER_FOR_CUDA = [
    ((13, 0), ">= 580.65.06 (CUDA 13.x)"),
    ((12, 0), ">= 525.60.13 (CUDA 12.x minor-version compatibility)"),
    ((11, 1), ">= 450.80.02 (CUDA 11.x minor-version compatibility)"),
    ((11, 0), ">= 450.36.06 (CUDA 11.0)"),
]


def min_driver(cuda: str | None) -> str:
    """The oldest NVIDIA driver that runs a torch built with this CUDA version."""
    if not cuda:
        return "none needed (CPU-only torch: runs on the CPU, never on the GPU)"
    major, minor = (int(x) for x in (cuda.split(".") + ["0"])[:2])
    for (maj, mn), text in DRIVER_FOR_CUDA:
        if (major, minor) >= (maj, mn):
            return text
    return f"unknown for CUDA {cuda} (older than 11.0)"


def rtx3090_support(arch: list[str]) -> str:
    """Whether the build has kernels for the organisers' RTX 3090 (contract.SERVER_GPU_ARCH)."""
    gpu = f"{contract.SERVER_GPU_ARCH} = RTX 3090"
    if contract.SERVER_GPU_ARCH in arch:
        return f"{gpu}: yes"
    if any(a in arch for a in ("sm_80", "compute_80", "compute_86")):
        return f"{gpu}: yes, through sm_80 binaries / PTX"
    return f"{gpu}: [red]NO kernels for it[/]"


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


@dataclass
class Report:
    image_id: str
    size: int
    base_size: int
    venv_bytes: int
    weights_bytes: int
    code_bytes: int
    layers: list[tuple[int, str]] = field(default_factory=list)
    probe: dict = field(default_factory=dict)

    @property
    def expected(self) -> int:
        return self.base_size + self.venv_bytes + self.weights_bytes + self.code_bytes

    @property
    def overhead(self) -> float:
        return self.size / self.expected - 1

    @property
    def size_ok(self) -> bool:
        return self.size <= self.expected * (1 + SIZE_LIMIT)


def short_instruction(created_by: str) -> str:
    text = created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ").strip()
    text = re.sub(r"\b(dir|file|multi):[0-9a-f]{16,} ", "", text)  # content hashes say nothing
    return " ".join(text.split())[:60]


def probe_image(client, image_id: str) -> dict:
    """Run the probe inside the image (no network, removed afterwards) and parse its JSON."""
    out = client.containers.run(image_id, ["python", "-c", PROBE], network_mode="none",
                                remove=True, user="root", stdout=True, stderr=False)
    return json.loads(out.decode().strip().splitlines()[-1])


def our_layers(client, image_id: str, base_image: str) -> list[tuple[int, str]]:
    """Layers by size, largest first; the base image's own layers count as one row."""
    history = client.api.history(image_id)
    base_count = len(client.api.history(base_image))
    ours = history[: max(len(history) - base_count, 0)]
    base_size = sum(h["Size"] for h in history[len(ours):])
    rows = [(h["Size"], short_instruction(h.get("CreatedBy", ""))) for h in ours if h["Size"] > 0]
    rows.append((base_size, f"base image {base_image}"))
    return sorted(rows, reverse=True)


def collect(client, image_id: str, base_image: str, bytes_by_folder: dict[str, int]) -> Report:
    image = client.api.inspect_image(image_id)
    base = client.api.inspect_image(base_image)
    probe = probe_image(client, image_id)
    return Report(image_id=image_id, size=image["Size"], base_size=base["Size"],
                  venv_bytes=probe["venv_bytes"],
                  # as shipped: checkpoints are slimmed inside the build, so the folder's bytes
                  # on the host would let the size check pass an image that is too large
                  weights_bytes=probe.get("weights_bytes", bytes_by_folder.get("weights", 0)),
                  code_bytes=bytes_by_folder.get("inference", 0),
                  layers=our_layers(client, image_id, base_image), probe=probe)


def show(console: Console, r: Report, tags: list[str], seconds: float, builder_s: float,
         runtime_s: float) -> None:
    p = r.probe
    arch = p.get("arch") or []
    t = Table(title="make build", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("image", ", ".join(tags))
    t.add_row("image id", r.image_id)
    t.add_row("total size", human(r.size))
    t.add_row("layers by size", "\n".join(f"{human(s):>9}  {what}" for s, what in r.layers))
    t.add_row("seconds", f"{seconds:.1f} (builder stage {builder_s:.1f}, runtime stage {runtime_s:.1f})")
    t.add_row("python", f"{p.get('python')} at {p.get('executable')}")
    if "torch_error" in p:
        t.add_row("torch", f"[red]cannot import: {p['torch_error']}[/]")
    else:
        cudnn = f", cuDNN {p['cudnn']}" if p.get("cudnn") else ""
        t.add_row("torch / CUDA", f"{p.get('torch')} / {p.get('cuda') or 'none (CPU build)'}{cudnn}")
    t.add_row("GPU architectures", f"{' '.join(arch)}  ({rtx3090_support(arch)})" if arch
              else "none (CPU build)")
    t.add_row("min NVIDIA driver", min_driver(p.get("cuda")))
    verdict = "[green]OK[/]" if r.size_ok else "[red]TOO LARGE[/]"
    t.add_row("size check", f"{human(r.size)} vs base {human(r.base_size)} + /opt/venv "
              f"{human(r.venv_bytes)} + weights {human(r.weights_bytes)} + code "
              f"{human(r.code_bytes)} = {human(r.expected)}: {r.overhead:+.2%} "
              f"(limit +{SIZE_LIMIT:.0%}) {verdict}")
    console.print(t)
