"""The organisers' `docker run` line, and a second run under their server's limits, via the CLI.

Why the CLI and not the SDK: the line in the submission guide is the thing being checked, so it
is run as text, flag for flag. On a host without the NVIDIA runtime `--runtime=nvidia` and
`--gpus 0` cannot work and are dropped (said plainly: GPU use is then not checked). Docker reads
`--gpus 0` as a count of zero GPUs and recent versions then set NVIDIA_VISIBLE_DEVICES=void after
the user's `=all`, so even on the server the container may see no GPU: the engine's `device:` log
line says what it got, and the CPU-only time per case is the worst case to plan for.
The command lines are pure functions so they are testable as data.
"""
from __future__ import annotations

import glob
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amoskit import contract

LIMITS_UID = 54321                 # any non-root uid without a passwd entry: the harshest case
METRICS_MOUNT = "/workspace/metrics"


def organisers_command(team: str, input_dir: Path, output_dir: Path, nvidia: bool,
                       cidfile: Path | None = None, cgroup_parent: str = "") -> list[str]:
    """The guide's line with the paths and TEAMNAME filled in; GPU flags only with the runtime.
    `cidfile` and `cgroup_parent` add bookkeeping only: a timed-out run can be found and killed,
    and a memory hog fails its own container on a host smaller than the server (the container
    sees neither)."""
    return contract.OrganiserRun(team, input_dir, output_dir, nvidia, cidfile=cidfile,
                                 cgroup_parent=cgroup_parent).cli()


def limits_command(team: str, input_dir: Path, output_dir: Path, metrics_dir: Path,
                   nvidia: bool, host_cpus: int, uid: int = LIMITS_UID,
                   cidfile: Path | None = None, cgroup_parent: str = "") -> list[str]:
    """The organisers' line under the server's limits (no network, 4 CPUs as a quota, 30 GB, no
    swap), 24 GB of GPU memory for the engine and a non-root uid. No `--gpus 0` (zero GPUs to
    Docker): the NVIDIA runtime and NVIDIA_VISIBLE_DEVICES=all give the GPU."""
    return contract.OrganiserRun(
        team, input_dir, output_dir, nvidia, gpus=None, user=f"{uid}:{uid}",
        limits=contract.ServerLimits.on_host(host_cpus),
        env=(("GPU_MEMORY_LIMIT_GB", str(contract.SERVER_GPU_MEMORY_GB)),
             ("METRICS_FILE", f"{METRICS_MOUNT}/metrics.json")),
        mounts=((str(metrics_dir), METRICS_MOUNT),), cidfile=cidfile,
        cgroup_parent=cgroup_parent, hardened=True).cli()


DEVICE_RE = re.compile(r"(?:^|[\s\]|])(device:\s.*)$")


def device_line(log: str) -> str:
    """The engine's `device: ...` line (what the container got), or ''."""
    for line in log.splitlines():
        m = DEVICE_RE.search(line.strip())
        if m:
            return m.group(1).strip()
    return ""


def saw_gpu(device: str) -> bool | None:
    """True/False from the device line, None when the log has none."""
    d = device.lower()
    if d.startswith("device: cuda"):
        return True
    if d.startswith("device: cpu"):
        return False
    return None


class CgroupPeak:
    """Poll a container's cgroup for its peak memory (v1 max_usage, v2 memory.peak/current)."""

    PATTERNS = ("/sys/fs/cgroup/memory/docker/{id}/memory.max_usage_in_bytes",
                "/sys/fs/cgroup/memory/**/{id}*/memory.max_usage_in_bytes",
                "/sys/fs/cgroup/system.slice/docker-{id}.scope/memory.peak",
                "/sys/fs/cgroup/docker/{id}/memory.peak",
                "/sys/fs/cgroup/**/*{id}*/memory.current",
                "/sys/fs/cgroup/memory/docker/{id}/memory.usage_in_bytes")

    def __init__(self, cidfile: Path, interval: float = 0.2):
        self.cidfile = cidfile
        self.interval = interval
        self.peak = 0
        self.source = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _find(self, cid: str) -> list[str]:
        found = []
        for pat in self.PATTERNS:
            found += glob.glob(pat.format(id=cid), recursive="**" in pat)
        return found

    def _poll(self) -> None:
        files: list[str] = []
        while not self._stop.is_set():
            if not files:
                try:
                    cid = self.cidfile.read_text().strip()
                except OSError:
                    cid = ""
                if cid:
                    files = self._find(cid)
            for f in files:
                try:
                    v = int(Path(f).read_text().strip())
                except (OSError, ValueError):
                    continue
                if v > self.peak:
                    self.peak, self.source = v, f
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class RunResult:
    """What one container run did."""
    command: list[str]
    returncode: int
    seconds: float
    log_path: Path
    log_tail: str
    device: str
    timed_out: bool = False
    peak_memory_bytes: int = 0
    metrics: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return shlex.join(self.command)


def stop_run(proc: subprocess.Popen, cidfile: Path | None, env: dict) -> None:
    """Kill and remove the run's container (found through its cidfile), then the CLI."""
    if cidfile is not None and cidfile.exists():
        cid = cidfile.read_text().strip()
        if cid:
            subprocess.run(["docker", "rm", "-f", cid], env=env, capture_output=True, timeout=60)
    proc.kill()
    proc.wait()


def run_logged(cmd: list[str], env: dict, log_path: Path, timeout: float,
               on_line: Callable[[str], None] | None = None,
               cidfile: Path | None = None) -> RunResult:
    """Run a docker CLI command, its output into log_path (and on_line), with a time limit."""
    start = time.monotonic()
    lines: list[str] = []
    timed_out = False
    peak = CgroupPeak(cidfile) if cidfile is not None else None
    with open(log_path, "w") as log:
        log.write("$ " + shlex.join(cmd) + "\n")
        log.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", bufsize=1)

        def pump():
            for line in proc.stdout:
                log.write(line)
                log.flush()
                lines.append(line.rstrip("\n"))
                if on_line:
                    on_line(line.rstrip("\n"))
        reader = threading.Thread(target=pump, daemon=True)
        if peak:
            peak.__enter__()
        reader.start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            stop_run(proc, cidfile, env)
        except BaseException:          # Ctrl-C, SIGTERM: the container must not outlive us
            stop_run(proc, cidfile, env)
            raise
        finally:
            if peak:
                peak.__exit__()
        reader.join(timeout=10)
    text = "\n".join(lines)
    return RunResult(cmd, proc.returncode, time.monotonic() - start, log_path,
                     "\n".join(lines[-15:]), device_line(text), timed_out,
                     peak.peak if peak else 0)
