"""The organisers' contract for AMOS22 task 1, stated once; every tool reads it from here.

Why one module: these rules (the team name, the file names, the label ids, the server's limits,
their `docker run` line) were written down in several tools and had started to drift. Source:
the AMOS22 submission guide (shared/docs/amos22-submission-guide.md) and AMOS22's dataset.json.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- team and task
TEAMNAME_RE = re.compile(r"^[a-z]+$")
DEFAULT_TASK = "task1"


def teamname_problem(team: str | None, verb: str = "build") -> str | None:
    """None when `team` is a valid TEAMNAME, else the one-line reason naming the fix."""
    if TEAMNAME_RE.match(team or ""):
        return None
    return (f"TEAMNAME='{team or ''}' must be lowercase letters only (a-z), "
            f"e.g. make {verb} TEAMNAME=myteam")


# --------------------------------------------------------------------------- file names
@dataclass(frozen=True)
class SubmissionFiles:
    """What `make package` writes and `make verify-load` reads, all beside each other in DIST."""
    tarball: Path      # TEAMNAME-TASK.tar.gz: `docker save NAME | gzip -c`, the file sent
    sha256: Path       # sha256sum line for the tarball
    manifest: Path     # JSON record of what was packaged (amoskit.records.PackageManifest)
    paper: Path        # TEAMNAME-TASK.pdf: the short paper sent with it
    report_md: Path    # verify-load's verdict, Markdown
    report_json: Path  # verify-load's verdict, JSON
    report_html: Path  # verify-load's verdict with the pictures inside, one self-contained page
    report_dir: Path   # verify-load's logs, outputs and preview pictures

    @classmethod
    def of(cls, tarball: Path, team: str, task: str = DEFAULT_TASK) -> "SubmissionFiles":
        """The files that go with a given tarball (its name need not follow the rule)."""
        stem = tarball.name[: -len(".tar.gz")] if tarball.name.endswith(".tar.gz") else tarball.name
        d = tarball.parent
        return cls(tarball=tarball, sha256=Path(f"{tarball}.sha256"),
                   manifest=Path(f"{tarball}.manifest.json"), paper=d / f"{team}-{task}.pdf",
                   report_md=d / f"{stem}.verify.md", report_json=d / f"{stem}.verify.json",
                   report_html=d / f"{stem}.verify.html",
                   report_dir=d / f"{stem}.verify")

    @classmethod
    def in_dist(cls, dist: Path, team: str, task: str = DEFAULT_TASK) -> "SubmissionFiles":
        return cls.of(dist / f"{team}-{task}.tar.gz", team, task)


# --------------------------------------------------------------------------- labels
# Task 1 label ids, spelled exactly as AMOS22's own dataset.json spells them ("gall bladder",
# and its "arota" for the aorta), so that our reports name organs as the challenge does.
AMOS_LABELS: dict[int, str] = {
    0: "background", 1: "spleen", 2: "right kidney", 3: "left kidney", 4: "gall bladder",
    5: "esophagus", 6: "liver", 7: "stomach", 8: "arota", 9: "postcava", 10: "pancreas",
    11: "right adrenal gland", 12: "left adrenal gland", 13: "duodenum", 14: "bladder",
    15: "prostate/uterus",
}
AMOS_LABEL_IDS: dict[str, int] = {name: i for i, name in AMOS_LABELS.items()}  # dataset.json form

# --------------------------------------------------------------------------- scoring
# AMOS22 ranks on Dice and normalized surface Dice (NSD), but its evaluation page does not keep
# the tolerance (its link to the metrics code is lost, and the organisers' repository has no
# evaluation code). 1 mm is the convention of the NSD reference code's lineage (MSD's "surface
# Dice at 1 mm", FLARE21) and the strictest common choice; every report says which was used.
NSD_TOLERANCE_MM = 1.0
NSD_TOLERANCE_SOURCE = ("AMOS22 does not publish its tolerance; 1 mm as in MSD and FLARE21, "
                        "set another with --nsd-tolerance-mm")

# --------------------------------------------------------------------------- the server
SERVER_CPUS = 4
SERVER_MEMORY = "30g"
SERVER_MEMORY_BYTES = 30 * 1024 ** 3
SERVER_GPU_MEMORY_GB = 24        # one RTX 3090
SERVER_GPU_ARCH = "sm_86"        # the RTX 3090's compute capability
# An AMOS22 CT case of typical size: (z, y, x) voxels and spacing in mm
AMOS_CASE_SHAPE = (160, 512, 512)
AMOS_CASE_SPACING = (2.5, 0.7, 0.7)

# torch inside the image: the server's NVIDIA driver is unknown and may date from 2022, so the
# CUDA 11.8 build (drivers >= 450.80.02), which still has the RTX 3090's sm_86 kernels.
IMAGE_TORCH_VERSION = "2.7.1"
IMAGE_TORCH_INDEX_URL = "https://download.pytorch.org/whl/cu118"

# --------------------------------------------------------------------------- the docker run line
PIDS_LIMIT = 4096   # our limits run only: a fork bomb fails its own container, not the host
INPUT_MOUNT = "/workspace/input"
OUTPUT_MOUNT = "/workspace/output"
COMMAND = ("python", "run_inference.py")
GUIDE_LINE = ("docker run --rm --runtime=nvidia --ipc=host  -e NVIDIA_VISIBLE_DEVICES=all --gpus 0 "
              "--user root -v LOCAL_PATH_INPUT:/workspace/input/:ro "
              "-v LOCAL_PATH_OUTPUT:/workspace/output/ TEAMNAME python run_inference.py")


@dataclass(frozen=True)
class ServerLimits:
    """The server's limits as container settings: no network, its CPUs (capped at what this host
    has: `--cpus 4` fails on 2 cores), its memory without swap."""
    cpus: int = SERVER_CPUS
    memory: str = SERVER_MEMORY
    cpu_period: int = 100_000

    @classmethod
    def on_host(cls, host_cpus: int) -> "ServerLimits":
        return cls(cpus=min(SERVER_CPUS, max(host_cpus, 1)))

    @property
    def cpu_quota(self) -> int:
        return self.cpus * self.cpu_period

    def describe(self) -> str:
        return f"--network none, {self.cpus:g} CPUs (quota), {self.memory.rstrip('gG')} GB"


@dataclass(frozen=True)
class OrganiserRun:
    """The organisers' `docker run` line as one value, rendered as a CLI line or SDK arguments.

    Their line: `docker run --rm --runtime=nvidia --ipc=host -e NVIDIA_VISIBLE_DEVICES=all
    --gpus 0 --user root -v IN:/workspace/input/:ro -v OUT:/workspace/output/ TEAMNAME python
    run_inference.py` (GUIDE_LINE). The GPU parts exist only on a host with the NVIDIA runtime
    (`nvidia=False` drops `--runtime=nvidia` and `--gpus`). Docker reads `--gpus 0` as a request
    for zero GPUs, on which recent engines set NVIDIA_VISIBLE_DEVICES=void: a run that wants the
    GPU says `gpus="all"`, or `gpus=None` to rely on the runtime and the variable alone. The
    other fields add what our own runs add on top: the server's limits, environment, mounts."""
    image: str
    input_dir: Path
    output_dir: Path
    nvidia: bool
    gpus: str | None = "0"
    user: str = "root"
    limits: ServerLimits | None = None
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[tuple[str, str], ...] = ()      # extra read-write (host, container) mounts
    cidfile: Path | None = None
    cgroup_parent: str = ""                       # bookkeeping: a memory bound on a small host
    hardened: bool = False                        # --pids-limit and no-new-privileges
    command: tuple[str, ...] = COMMAND

    def cli(self) -> list[str]:
        """The guide's line, flag for flag, with the paths and the image filled in."""
        cmd = ["docker", "run", "--rm"]
        if self.nvidia:
            cmd.append("--runtime=nvidia")
        cmd += ["--ipc=host", "-e", "NVIDIA_VISIBLE_DEVICES=all"]
        if self.nvidia and self.gpus is not None:
            cmd += ["--gpus", self.gpus]
        if self.limits:
            cmd += ["--network", "none", "--cpu-period", str(self.limits.cpu_period),
                    "--cpu-quota", str(self.limits.cpu_quota), "--memory", self.limits.memory,
                    "--memory-swap", self.limits.memory]
        for k, v in self.env:
            cmd += ["-e", f"{k}={v}"]
        if self.hardened:
            cmd += ["--pids-limit", str(PIDS_LIMIT), "--security-opt", "no-new-privileges"]
        cmd += ["--user", self.user]
        if self.cidfile is not None:
            cmd += ["--cidfile", str(self.cidfile)]
        if self.cgroup_parent:
            cmd += ["--cgroup-parent", self.cgroup_parent]
        cmd += ["-v", f"{self.input_dir}:{INPUT_MOUNT}/:ro", "-v", f"{self.output_dir}:{OUTPUT_MOUNT}/"]
        for host, inside in self.mounts:
            cmd += ["-v", f"{host}:{inside}/"]
        return cmd + [self.image, *self.command]

    def sdk(self) -> dict:
        """Keyword arguments for `client.containers.create` giving the same container. Without
        the NVIDIA runtime NVIDIA_VISIBLE_DEVICES means nothing, so it is left out here."""
        kw = {"image": self.image, "command": list(self.command), "user": self.user,
              "ipc_mode": "host", "environment": dict(self.env),
              "volumes": {str(self.input_dir): {"bind": INPUT_MOUNT, "mode": "ro"},
                          str(self.output_dir): {"bind": OUTPUT_MOUNT, "mode": "rw"},
                          **{str(h): {"bind": c, "mode": "rw"} for h, c in self.mounts}}}
        if self.limits:
            kw.update(network_mode="none", nano_cpus=self.limits.cpus * 1_000_000_000,
                      mem_limit=self.limits.memory)
        if self.hardened:
            kw.update(pids_limit=PIDS_LIMIT, security_opt=["no-new-privileges"])
        if self.nvidia:
            from docker.types import DeviceRequest
            kw["runtime"] = "nvidia"
            kw["environment"]["NVIDIA_VISIBLE_DEVICES"] = "all"
            if self.gpus is not None:
                count = -1 if self.gpus == "all" else int(self.gpus)
                kw["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
        return kw


def main(argv: list[str]) -> int:
    """`python -m amoskit.contract teamname NAME [VERB]`: the Makefile's check, stdlib only, so it
    runs with any python3 before the virtualenv exists and before Docker is touched."""
    if len(argv) >= 2 and argv[0] == "teamname":
        problem = teamname_problem(argv[1], argv[2] if len(argv) > 2 else "build")
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
        return 0
    print("usage: python -m amoskit.contract teamname NAME [VERB]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
