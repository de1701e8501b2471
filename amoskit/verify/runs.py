"""Step 4 of verify-load: the organisers' literal `docker run` line on the sample cases, then a
run under the server's limits.

Why both: the first proves their line works with this image as it is; the second that it still
works without network, with their CPUs and memory, as a non-root user, and measures it
(amoskit.verify.measures). Each check adds its rows to the Verdict; `run_checks` runs them.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from amoskit import contract
from amoskit.daemon import organiser_run, ownership
from amoskit.daemon.memory_bound import GiB, MemoryBound, default_limit, host_memory_bytes
from amoskit.daemon.organiser_run import RunResult
from amoskit.verify import validation
from amoskit.verify import engine_metrics, measures
from amoskit.verify.progress import run_stage
from amoskit.verify.report import RUN, Verdict


class VerifyError(Exception):
    """verify-load cannot go on (one line, naming the file and the fix)."""


@dataclass
class Run:
    """One container run and the folder it wrote its outputs to."""
    output: Path
    result: RunResult


def fresh_dir(path: Path, mode: int = 0o755) -> Path:
    if path.exists():
        try:
            shutil.rmtree(path)
        except PermissionError as exc:
            raise VerifyError(f"cannot clear {path} ({exc.strerror}: files written by a "
                              f"container as root): remove it with sudo and retry") from None
    path.mkdir(parents=True)
    path.chmod(mode)
    return path


def give_back(client, team: str, folder: Path) -> None:
    """Files written by root in the container: hand them to the invoking user (make run's rule)."""
    if not folder.exists():
        return
    try:
        ownership.hand_outputs_to(client, team, folder, ownership.invoking_user())
    except Exception:  # noqa: BLE001 - best effort; the report still stands
        pass


def tail(text: str, n: int = 3) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return " | ".join(lines[-n:])[-400:] or "(no output)"


def check_samples(samples: Path | None, v: Verdict) -> Path | None:
    """The sample cases to run on, or None (with the reason) when there are none to use."""
    if samples is None or not samples.is_dir() or not validation.list_cases(samples):
        v.add(RUN, "samples", "fail", f"no *.nii.gz sample cases in {samples}: run `make "
                                      f"samples` or pass INPUT=folder")
        return None
    if any(c in str(samples.resolve()) for c in ":,"):
        v.add(RUN, "samples", "fail", f"{samples}: docker -v cannot mount a path with ':' or ','")
        return None
    return samples


def check_docker_cli(v: Verdict) -> bool:
    if shutil.which("docker") is None:
        v.add(RUN, "docker CLI", "fail", "the `docker` command is not installed")
        return False
    return True


def check_organisers_line(team: str, samples: Path, client, cli_env: dict, work: Path,
                          nvidia: bool, timeout: float, v: Verdict,
                          bound: MemoryBound | None = None) -> Run:
    """Their line, flag for flag (GPU flags only where the NVIDIA runtime exists)."""
    n = len(validation.list_cases(samples))
    out = fresh_dir(work / "output-organisers")
    cid = work / "organisers.cid"
    cid.unlink(missing_ok=True)
    parent = bound.parent if bound else ""
    cmd = organiser_run.organisers_command(team, samples.resolve(), out.resolve(), nvidia,
                                           cidfile=cid, cgroup_parent=parent)
    if not nvidia:
        v.add(RUN, "GPU", "warn", "this host has no NVIDIA runtime: ran the organisers' line "
                                  "without --runtime=nvidia and --gpus 0, so GPU use was NOT "
                                  "checked")
    r = run_stage("organisers' docker run", cmd, cli_env, work / "run-organisers.log", timeout,
                  cidfile=cid)
    bounded = (f"; `--cgroup-parent {parent}`, a cgroup whose memory limit of "
               f"{bound.limit / GiB:.1f} GiB (swap included) keeps a memory hog inside its own "
               f"container on this host" if parent else "")
    v.notes.append(f"Organisers' line as run: `{r.text}` (added for bookkeeping only: "
                   f"`--cidfile`, so that a timed-out run can be killed{bounded}; the container "
                   f"sees nothing of it)")
    give_back(client, team, out)
    if r.returncode == 0:
        v.add(RUN, "organisers' line", "pass", f"exit 0 in {r.seconds:.1f} s for {n} case(s) "
                                               f"(~{r.seconds / max(n, 1):.1f} s/case incl. "
                                               f"start-up)", seconds=r.seconds, command=r.text)
    else:
        why = "timed out" if r.timed_out else f"exit {r.returncode}"
        v.add(RUN, "organisers' line", "fail", f"{why} after {r.seconds:.1f} s: "
                                               f"{tail(r.log_tail)} (log: {r.log_path})")
    return Run(out, r)


def check_device(r: RunResult, n_cases: int, nvidia: bool, v: Verdict) -> None:
    """Which device the engine says it got under the organisers' line."""
    gpu = organiser_run.saw_gpu(r.device)
    if gpu is None:
        v.add(RUN, "device", "warn", "the log has no `device:` line: cannot tell whether the "
                                     "container saw a GPU")
    elif gpu:
        v.add(RUN, "device", "pass", r.device)
    else:
        v.add(RUN, "device", "warn" if nvidia else "info",
              f"{r.device} - CPU only: ~{r.seconds / max(n_cases, 1):.1f} s per case is the "
              f"worst case on the server. Their `--gpus 0` means zero GPUs to Docker, which then "
              f"sets NVIDIA_VISIBLE_DEVICES=void, so their line may well give no GPU")


def check_server_limits(team: str, samples: Path, client, cli_env: dict, work: Path,
                        nvidia: bool, host_cpus: int, timeout: float, v: Verdict,
                        bound: MemoryBound | None = None) -> Run:
    """The same image under the server's limits, as a non-root uid, with the engine's metrics."""
    out = fresh_dir(work / "output-limits", 0o777)
    metrics = fresh_dir(work / "metrics-limits", 0o777)
    cid = work / "limits.cid"
    cid.unlink(missing_ok=True)
    cmd = organiser_run.limits_command(team, samples.resolve(), out.resolve(),
                                       metrics.resolve(), nvidia, host_cpus, cidfile=cid,
                                       cgroup_parent=bound.parent if bound else "")
    r = run_stage("run under server limits", cmd, cli_env, work / "run-limits.log", timeout,
                  cidfile=cid)
    r.metrics = engine_metrics.read_metrics(metrics)
    v.notes.append(f"Server-limits run: `{r.text}`")
    give_back(client, team, out)
    server = contract.ServerLimits.on_host(host_cpus)
    limits = (f"{server.describe()}, GPU_MEMORY_LIMIT_GB={contract.SERVER_GPU_MEMORY_GB}, "
              f"uid {organiser_run.LIMITS_UID}")
    if r.returncode == 0:
        v.add(RUN, "server limits", "pass", f"exit 0 in {r.seconds:.1f} s ({limits})",
              seconds=r.seconds)
    else:
        why = "timed out" if r.timed_out else (
            "killed: out of memory?" if r.returncode == 137 else f"exit {r.returncode}")
        v.add(RUN, "server limits", "fail", f"{why} ({limits}): {tail(r.log_tail)} "
                                            f"(log: {r.log_path})")
    return Run(out, r)


def check_memory_bound(bound: MemoryBound, v: Verdict) -> None:
    if bound.parent:
        v.add(RUN, "memory bound", "pass", f"runs placed under cgroup {bound.parent}: "
                                           f"{bound.limit / GiB:.1f} GiB, swap included, below "
                                           f"this host's {host_memory_bytes() / GiB:.1f} GiB: a "
                                           f"memory hog fails its own container, never the host")
    else:
        v.add(RUN, "memory bound", "warn", bound.why)


def run_checks(team: str, samples: Path, client, cli_env: dict, work: Path, timeout: float,
               v: Verdict, memory_limit: int = 0) -> dict[str, Run]:
    """Step 4; returns both runs ("organisers", "limits") for step 5. Both run under a cgroup
    bounded below this host's RAM (memory_limit bytes; 0: the host's RAM less a reserve)."""
    n = len(validation.list_cases(samples))
    info = client.info()
    nvidia = "nvidia" in (info.get("Runtimes") or {})
    host_cpus = len(os.sched_getaffinity(0))
    with MemoryBound(f"amoskit-verify-{os.getpid()}",
                     memory_limit or default_limit(host_memory_bytes()),
                     info.get("CgroupDriver") or "cgroupfs") as bound:
        check_memory_bound(bound, v)
        return both_runs(team, samples, client, cli_env, work, timeout, v, n, nvidia, host_cpus,
                         bound)


def both_runs(team: str, samples: Path, client, cli_env: dict, work: Path, timeout: float,
              v: Verdict, n: int, nvidia: bool, host_cpus: int,
              bound: MemoryBound) -> dict[str, Run]:
    first = check_organisers_line(team, samples, client, cli_env, work, nvidia, timeout, v,
                                  bound)
    check_device(first.result, n, nvidia, v)
    second = check_server_limits(team, samples, client, cli_env, work, nvidia, host_cpus,
                                 timeout, v, bound)
    measures.check_measures(second.result, n, contract.ServerLimits.on_host(host_cpus), v)
    return {"organisers": first, "limits": second}
