"""make verify-load: prove from the tarball alone that the organisers' load + run will work.

Why: "it ran on my machine" proves little: there the layers already exist, the tag already
resolves and the GPU flags may differ. This reads only dist/TEAMNAME-task1.tar.gz (and its
.sha256 / manifest sidecars) and goes through the organisers' steps:
1. integrity, offline: sha256, complete gzip (CRC, no trailing garbage), complete tar, every layer
   hashing to the config's rootfs.diff_ids (classic and Docker 25+ OCI layouts);
2. contents, offline: tag, platform, entrypoint, run_inference.py, python, weights, no secrets;
3. `docker load` into a throwaway daemon (empty, like theirs) and the tag resolving to the
   packaged config and layers;
4. their literal `docker run` line on the sample cases, then a run under the server's limits;
5. the outputs validated (geometry, type, labels, Dice against the sample labels);
6. a verdict table (also Markdown + JSON beside the tarball), one PNG per case, and what to email.
Exit status 1 on any fail.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path


import numpy as np
from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, Progress, SpinnerColumn,
                           TextColumn, TimeElapsedColumn, TimeRemainingColumn,
                           TransferSpeedColumn)

from amoskit import contract
from amoskit.verify import image_checks
from amoskit.tarball import reader as image_tarball
from amoskit.daemon import organiser_run
from amoskit.verbs import validate as validate_outputs
from amoskit.verify.report import Verdict

console = Console(stderr=True)
EMAIL = "miccai.amos22@gmail.com"
S1, S2, S3, S4, S5, S6 = ("1 integrity", "2 contents", "3 load", "4 run", "5 outputs",
                          "6 deliver")


def sidecars(tarball: Path) -> tuple[Path, Path]:
    return Path(f"{tarball}.sha256"), Path(f"{tarball}.manifest.json")


def report_paths(tarball: Path, team: str, task: str) -> dict[str, Path]:
    stem = tarball.name[: -len(".tar.gz")] if tarball.name.endswith(".tar.gz") else tarball.name
    d = tarball.parent
    return {"md": d / f"{stem}.verify.md", "json": d / f"{stem}.verify.json",
            "dir": d / f"{stem}.verify", "pdf": d / f"{team}-{task}.pdf"}


def bytes_progress(label: str, total: int) -> Progress:
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                    transient=False)


# --------------------------------------------------------------------------- step 1 + 2
def check_offline(tarball: Path, team: str, v: Verdict):
    """Steps 1-2; returns (image, contents) or (None, None) when the file cannot be trusted."""
    sha_path, manifest_path = sidecars(tarball)
    size = tarball.stat().st_size
    try:
        with bytes_progress("read + hash", size) as prog:
            task = prog.add_task("scan", total=size)
            scan = image_tarball.scan_tarball(tarball, lambda n: prog.advance(task, n))
    except image_tarball.TarballError as exc:
        check = {"gzip": "gzip stream", "tar": "tar"}.get(exc.check, exc.check)
        v.add(S1, check, "fail", exc.reason)
        _sha_row(file_sha256(tarball), sha_path, tarball, v)
        return None, None
    _sha_row(scan.file_sha256, sha_path, tarball, v)
    v.add(S1, "gzip stream", "pass", f"complete, CRC-32 and length ok, no trailing data "
                                     f"({scan.compressed_bytes / 1e6:,.1f} MB)")
    v.add(S1, "tar", "pass", f"complete with end-of-archive marker, {len(scan.members)} entries, "
                             f"{scan.uncompressed_bytes / 1e6:,.1f} MB")
    try:
        img = image_tarball.resolve_image(scan)
    except image_tarball.TarballError as exc:
        v.add(S1, "layout", "fail", exc.reason)
        return None, None
    v.add(S1, "layout", "pass", "Docker 25+ OCI layout (index.json, blobs/sha256)"
          if img.layout == "oci" else "classic docker save (manifest.json, <id>/layer.tar)")
    by_check: dict[str, list[str]] = {}
    for check, reason in img.problems:
        by_check.setdefault(check, []).append(reason)
    for check in ("config digest", "layer digest", "blob digest"):
        if check in by_check:
            v.add(S1, check, "fail", "; ".join(by_check.pop(check)[:3]))
        elif check == "layer digest":
            v.add(S1, check, "pass", f"all {len(img.layers)} layers hash to the config's "
                                     f"rootfs.diff_ids")
        elif check == "config digest":
            v.add(S1, check, "pass", img.config_digest)
    for check, reasons in by_check.items():
        v.add(S1, check, "warn", "; ".join(reasons))
    if manifest_path.exists():
        try:
            man = json.loads(manifest_path.read_text())
            same = (man.get("config_digest") == img.config_digest and
                    man.get("layer_diff_ids") == [m.diff_id for m in img.layers])
            v.add(S1, "package manifest", "pass" if same else "fail",
                  "config digest and layers equal the manifest written by make package" if same
                  else f"the tarball's image ({img.config_digest[:19]}...) is not the one "
                       f"{manifest_path.name} describes: re-run make package")
        except ValueError as exc:
            v.add(S1, "package manifest", "fail", f"{manifest_path.name} unreadable ({exc})")
    else:
        v.add(S1, "package manifest", "warn", f"{manifest_path.name} not found: cannot confirm "
                                              f"the file is the packaged image")
    contents = image_checks.check_contents(img, team)
    for f in contents.findings:
        v.add(S2, f.check, f.status, f.detail, **f.data)
    return img, contents


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha_row(scan_sha, sha_path: Path, tarball: Path, v: Verdict) -> None:
    if not sha_path.exists():
        v.add(S1, "sha256", "fail", f"{sha_path.name} not found beside the tarball: "
                                    f"re-run make package")
        return
    parts = sha_path.read_text().split()
    want = parts[0].lower() if parts else ""
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        v.add(S1, "sha256", "fail", f"{sha_path.name} is not in sha256sum format")
    elif want != scan_sha:
        v.add(S1, "sha256", "fail", f"file hashes to {scan_sha[:16]}..., {sha_path.name} says "
                                    f"{want[:16]}...: the file changed or is not the packaged one")
    else:
        name = parts[1].lstrip("*") if len(parts) > 1 else ""
        v.add(S1, "sha256", "pass" if name in ("", tarball.name) else "warn",
              scan_sha if name in ("", tarball.name) else
              f"{scan_sha} (but {sha_path.name} names {name})")


# --------------------------------------------------------------------------- step 3
def load_image(tarball: Path, team: str, img, daemon_mode: str, v: Verdict, stack):
    """Load into a throwaway daemon (or the shared one); returns (client, cli_env) or None."""
    import docker
    from amoskit.daemon import throwaway as throwaway_daemon
    cli_env = dict(os.environ)
    client = None
    if daemon_mode in ("auto", "throwaway"):
        try:
            d = stack.enter_context(throwaway_daemon.ThrowawayDaemon())
            client = docker.DockerClient(base_url=d.url, timeout=3600)
            cli_env = d.env()
            v.add(S3, "daemon", "pass", f"throwaway dockerd (empty data root {d.root}), like "
                                        f"the organisers' server")
        except throwaway_daemon.DaemonUnavailable as exc:
            if daemon_mode == "throwaway":
                v.add(S3, "daemon", "fail", f"throwaway dockerd could not start: {exc}")
                return None
            v.add(S3, "daemon", "warn", f"load NOT clean: no throwaway dockerd ({exc}); loading "
                                        f"into the shared engine, where the layers may already "
                                        f"exist")
    if client is None:
        from amoskit.daemon import connect as docker_env
        client, reason = docker_env.try_connect(timeout=3600)
        if client is None:
            v.add(S3, "docker load", "fail", reason)
            return None
        if daemon_mode == "shared":
            v.add(S3, "daemon", "warn", "load NOT clean: shared engine chosen (--daemon shared); "
                                        "layers that already exist are not re-checked by Docker")
    size = tarball.stat().st_size
    start = time.monotonic()
    try:
        with bytes_progress("docker load", size) as prog, open(tarball, "rb") as fh:
            task = prog.add_task("load", total=size)

            def chunks():
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        return
                    prog.advance(task, len(b))
                    yield b
            messages = []
            for msg in client.api.load_image(chunks()):
                if isinstance(msg, dict) and msg.get("error"):
                    raise RuntimeError(msg["error"])
                messages.append((msg or {}).get("stream", "").strip() if isinstance(msg, dict)
                                else str(msg))
    except Exception as exc:  # noqa: BLE001 - any engine error is the verdict
        v.add(S3, "docker load", "fail", f"docker load failed: {str(exc).splitlines()[0][:300]}")
        return None
    loaded = "; ".join(m for m in messages if m)
    v.add(S3, "docker load", "pass", f"{loaded or 'loaded'} in {time.monotonic() - start:.1f} s")
    from docker.errors import ImageNotFound
    ref = f"{team}:latest"
    try:
        got = client.images.get(ref)
    except ImageNotFound:
        v.add(S3, "tag resolves", "fail", f"after loading, {ref} does not resolve: the file has "
                                          f"no such tag")
        return None
    layers = (got.attrs.get("RootFS") or {}).get("Layers") or []
    want_layers = [m.diff_id for m in img.layers]
    if got.id == img.config_digest and layers == want_layers:
        v.add(S3, "tag resolves", "pass", f"{ref} -> {got.id[:19]}..., {len(layers)} layers as "
                                          f"packaged")
    else:
        v.add(S3, "tag resolves", "fail", f"{ref} -> {got.id[:19]}..., expected "
                                          f"{img.config_digest[:19]}... with the packaged layers")
        return None
    return client, cli_env


# --------------------------------------------------------------------------- step 4
def run_stage(label: str, cmd: list[str], env: dict, log: Path, timeout: float,
              cidfile: Path | None = None) -> organiser_run.RunResult:
    last = {"line": ""}
    with Progress(SpinnerColumn(), TextColumn(f"[bold]{label}"), TimeElapsedColumn(),
                  TextColumn("{task.fields[line]}"), console=console, transient=False) as prog:
        task = prog.add_task(label, line="")

        def on_line(line: str):
            last["line"] = line[-90:]
            prog.update(task, line=last["line"])
        return organiser_run.run_logged(cmd, env, log, timeout, on_line, cidfile)


class VerifyError(Exception):
    """verify-load cannot go on (one line, naming the file and the fix)."""


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
    """Files written by root in the container: hand them to the invoking non-root user."""
    if os.geteuid() == 0 or not folder.exists():
        return
    try:
        client.containers.run(team, ["chown", "-R", f"{os.getuid()}:{os.getgid()}", "/o"],
                              user="root", remove=True, network_mode="none",
                              volumes={str(folder): {"bind": "/o", "mode": "rw"}})
    except Exception:  # noqa: BLE001 - best effort; the report still stands
        pass


def run_checks(team: str, samples: Path, client, cli_env: dict, work: Path, timeout: float,
               v: Verdict) -> dict:
    """Step 4; returns the output folders and results for step 5."""
    cases = validate_outputs.list_cases(samples)
    n = len(cases)
    nvidia = "nvidia" in ((client.info().get("Runtimes") or {}))
    host_cpus = len(os.sched_getaffinity(0))
    out1 = fresh_dir(work / "output-organisers")
    cmd1 = organiser_run.organisers_command(team, samples.resolve(), out1.resolve(), nvidia)
    if not nvidia:
        v.add(S4, "GPU", "warn", "this host has no NVIDIA runtime: ran the organisers' line "
                                 "without --runtime=nvidia and --gpus 0, so GPU use was NOT "
                                 "checked")
    r1 = run_stage("organisers' docker run", cmd1, cli_env, work / "run-organisers.log", timeout)
    v.notes.append(f"Organisers' line as run: `{r1.text}`")
    give_back(client, team, out1)
    per_case = r1.seconds / max(n, 1)
    if r1.returncode == 0:
        v.add(S4, "organisers' line", "pass", f"exit 0 in {r1.seconds:.1f} s for {n} case(s) "
                                              f"(~{per_case:.1f} s/case incl. start-up)",
              seconds=r1.seconds, command=r1.text)
    else:
        why = "timed out" if r1.timed_out else f"exit {r1.returncode}"
        v.add(S4, "organisers' line", "fail", f"{why} after {r1.seconds:.1f} s: "
                                              f"{_tail(r1.log_tail)} (log: {r1.log_path})")
    gpu = organiser_run.saw_gpu(r1.device)
    if gpu is None:
        v.add(S4, "device", "warn", "the log has no `device:` line: cannot tell whether the "
                                    "container saw a GPU")
    elif gpu:
        v.add(S4, "device", "pass", r1.device)
    else:
        v.add(S4, "device", "warn" if nvidia else "info",
              f"{r1.device} - CPU only: ~{per_case:.1f} s per case is the worst case on the "
              f"server. Their `--gpus 0` means zero GPUs to Docker, which then sets "
              f"NVIDIA_VISIBLE_DEVICES=void, so their line may well give no GPU")
    # second run: the server's limits
    out2 = fresh_dir(work / "output-limits", 0o777)
    metrics = fresh_dir(work / "metrics-limits", 0o777)
    cid = work / "limits.cid"
    cid.unlink(missing_ok=True)
    cmd2 = organiser_run.limits_command(team, samples.resolve(), out2.resolve(),
                                        metrics.resolve(), nvidia, host_cpus, cidfile=cid)
    r2 = run_stage("run under server limits", cmd2, cli_env, work / "run-limits.log", timeout,
                   cidfile=cid)
    r2.metrics = organiser_run.read_metrics(metrics)
    v.notes.append(f"Server-limits run: `{r2.text}`")
    give_back(client, team, out2)
    server = contract.ServerLimits.on_host(host_cpus)
    limits = (f"{server.describe()}, GPU_MEMORY_LIMIT_GB={contract.SERVER_GPU_MEMORY_GB}, "
              f"uid {organiser_run.LIMITS_UID}")
    if r2.returncode == 0:
        v.add(S4, "server limits", "pass", f"exit 0 in {r2.seconds:.1f} s ({limits})",
              seconds=r2.seconds)
    else:
        why = "timed out" if r2.timed_out else (
            "killed: out of memory?" if r2.returncode == 137 else f"exit {r2.returncode}")
        v.add(S4, "server limits", "fail", f"{why} ({limits}): {_tail(r2.log_tail)} "
                                           f"(log: {r2.log_path})")
    secs = organiser_run.case_seconds(r2.metrics)
    if secs:
        worst = max(secs.items(), key=lambda kv: kv[1])
        v.add(S4, "time per case", "pass", "; ".join(f"{k} {s:.1f} s" for k, s in secs.items())
              + f" (slowest {worst[0]})", seconds=secs)
    else:
        v.add(S4, "time per case", "info", f"~{r2.seconds / max(n, 1):.1f} s per case incl. "
                                           f"start-up (no per-case metrics from the engine)")
    est = organiser_run.amos_sized_estimate(r2.metrics)
    if est:
        where = "on the GPU" if organiser_run.saw_gpu(r2.device) else f"on {server.cpus:g} CPUs"
        shape = "x".join(str(n) for n in reversed(contract.AMOS_CASE_SHAPE))
        mm = "x".join(f"{s:g}" for s in reversed(contract.AMOS_CASE_SPACING))
        v.add(S4, "AMOS-sized case", "info",
              f"~{est['seconds']:.0f} s per {shape} case ({mm} mm) {where}, estimated: "
              f"{est['factor']:.1f}x the voxels of {est['case']} at the model's spacing; "
              f"200 such cases ~{est['seconds'] * 200 / 3600:.1f} h", seconds=est["seconds"])
    engine_rss = r2.metrics.get("peak_rss_bytes") if isinstance(r2.metrics, dict) else None
    peak, source = ((r2.peak_memory_bytes, "container cgroup") if r2.peak_memory_bytes else
                    (engine_rss, "engine's peak RSS") if isinstance(engine_rss, int) and engine_rss
                    else (0, ""))
    if peak:
        gb = peak / 1024 ** 3
        v.add(S4, "peak memory", "pass" if gb < 0.9 * 30 else "warn",
              f"{gb:.2f} GiB of the 30 GB limit ({source})", bytes=peak)
    else:
        v.add(S4, "peak memory", "info", "not measured (container cgroup not readable)")
    gpu_peaks = [c.get("peak_gpu_bytes") or 0 for c in (r2.metrics.get("cases") or [])
                 if isinstance(c, dict)] if isinstance(r2.metrics, dict) else []
    if any(gpu_peaks):
        gb = max(gpu_peaks) / 1024 ** 3
        limit = contract.SERVER_GPU_MEMORY_GB
        v.add(S4, "peak GPU memory", "pass" if gb <= limit else "fail",
              f"{gb:.2f} GiB of the {limit} GB an RTX 3090 offers", bytes=max(gpu_peaks))
    return {"organisers": (out1, r1), "limits": (out2, r2)}


def _tail(text: str, n: int = 3) -> str:
    lines = [l for l in text.splitlines() if l.strip()]
    return " | ".join(lines[-n:])[-400:] or "(no output)"


# --------------------------------------------------------------------------- step 5 + 6
def validate_step(samples: Path, labels: Path | None, runs: dict, contents, work: Path,
                  v: Verdict) -> None:
    ds_path = None
    if contents is not None and contents.dataset_json:
        ds_path = work / "dataset.json"
        ds_path.write_text(json.dumps(contents.dataset_json))
    out1, r1 = runs["organisers"]
    rep = validate_outputs.validate(samples, out1, labels, ds_path)
    (work / "validate-organisers.json").write_text(json.dumps(rep.to_json(), indent=2))
    for p in rep.set_problems:
        v.add(S5, "output folder", "fail", p)
    if not rep.set_problems:
        v.add(S5, "output folder", "pass", f"one output per input ({len(rep.cases)}), same "
                                           f"names, no extra files")
    for c in rep.cases:
        v.add(S5, c.case, c.status, c.detail(), dice=c.dice)
    out2, r2 = runs["limits"]
    rep2 = validate_outputs.validate(samples, out2, labels, ds_path)
    bad = [c.case for c in rep2.cases if c.status == "fail"] + rep2.set_problems
    if bad:
        v.add(S5, "limits run outputs", "fail", f"{len(bad)} problem(s): {', '.join(bad[:3])}")
    else:
        agree = agreement(out1, out2, [c.case for c in rep.cases])
        v.add(S5, "limits run outputs", "pass" if agree is None or agree >= 0.999 else "warn",
              "valid" + (f"; {agree * 100:.3f}% of voxels equal to the organisers' run"
                         if agree is not None else ""))


def agreement(a: Path, b: Path, names: list[str]) -> float | None:
    import SimpleITK as sitk
    same = total = 0
    for n in names:
        try:
            x = sitk.GetArrayFromImage(sitk.ReadImage(str(a / n)))
            y = sitk.GetArrayFromImage(sitk.ReadImage(str(b / n)))
        except RuntimeError:
            return None
        if x.shape != y.shape:
            return 0.0
        same += int(np.count_nonzero(x == y))
        total += x.size
    return same / total if total else None


def previews(samples: Path, labels: Path | None, out: Path, dest: Path, v: Verdict) -> None:
    from amoskit.verify import preview as preview_png
    made = []
    for img in validate_outputs.list_cases(samples):
        pred = out / img.name
        if not pred.exists():
            continue
        ref = labels / img.name if labels is not None else None
        png = dest / preview_png.png_name(img.name)
        try:
            preview_png.write_preview(img, pred, ref, png)
            made.append(png)
        except (RuntimeError, ValueError) as exc:
            v.add(S6, f"preview {img.name}", "warn", f"not drawn: {exc}")
    if made:
        v.add(S6, "previews", "pass", f"{len(made)} PNG(s) in {dest}: open them and look",
              files=[str(p) for p in made])


def deliver(tarball: Path, pdf: Path, v: Verdict) -> None:
    if pdf.exists():
        v.add(S6, "short paper", "pass", f"{pdf.name} is beside the tarball")
    else:
        v.add(S6, "short paper", "warn", f"{pdf.name} not found beside the tarball: the "
                                         f"submission needs the short paper (MICCAI template)")
    v.reminder = (f"email {EMAIL}: {tarball.name} (as a cloud-drive link; it is too big to "
                  f"attach) and {pdf.name} (the short paper)")


# --------------------------------------------------------------------------- main
def verify(tarball: Path, team: str, task: str, samples: Path | None, labels: Path | None,
           daemon_mode: str, offline: bool, timeout: float) -> Verdict:
    from contextlib import ExitStack
    v = Verdict(str(tarball), team)
    if not tarball.exists():
        v.add(S1, "file", "fail", f"{tarball} does not exist: run `make package TEAMNAME={team}`")
        return v
    if not tarball.is_file():
        v.add(S1, "file", "fail", f"{tarball} is not a regular file")
        return v
    size = tarball.stat().st_size
    if size == 0:
        v.add(S1, "file", "fail", f"{tarball} is empty (0 bytes): re-run make package")
        return v
    v.add(S1, "file", "pass", f"{size / 1e6:,.1f} MB")
    img, contents = check_offline(tarball, team, v)
    paths = report_paths(tarball, team, task)
    if img is None:
        v.add(S3, "docker load", "skip", "integrity failed: the file cannot be trusted")
        deliver(tarball, paths["pdf"], v)
        return v
    if offline:
        v.add(S3, "docker load", "skip", "--offline")
        deliver(tarball, paths["pdf"], v)
        return v
    if samples is None or not samples.is_dir() or not validate_outputs.list_cases(samples):
        v.add(S4, "samples", "fail", f"no *.nii.gz sample cases in {samples}: run `make samples` "
                                     f"or pass INPUT=folder")
        samples = None
    elif any(c in str(samples.resolve()) for c in ":,"):
        v.add(S4, "samples", "fail", f"{samples}: docker -v cannot mount a path with ':' or ','")
        samples = None
    work = fresh_dir(paths["dir"])
    with ExitStack() as stack:
        loaded = load_image(tarball, team, img, daemon_mode, v, stack)
        if loaded is not None and samples is not None:
            client, cli_env = loaded
            if shutil.which("docker") is None:
                v.add(S4, "docker CLI", "fail", "the `docker` command is not installed")
            else:
                runs = run_checks(team, samples, client, cli_env, work, timeout, v)
                validate_step(samples, labels, runs, contents, work, v)
                previews(samples, labels, runs["organisers"][0], work / "previews", v)
    deliver(tarball, paths["pdf"], v)
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tarball", type=Path)
    ap.add_argument("--teamname", required=True)
    ap.add_argument("--task", default="task1")
    ap.add_argument("--samples", type=Path, default=Path("samples/images"))
    ap.add_argument("--labels", type=Path, default=Path("samples/labels"))
    ap.add_argument("--daemon", choices=("auto", "throwaway", "shared"), default="auto",
                    help="where to docker load: a throwaway dockerd (auto: when possible)")
    ap.add_argument("--offline", action="store_true", help="steps 1-2 only (no Docker)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per container run")
    args = ap.parse_args(argv)
    if not image_checks.TEAMNAME_RE.match(args.teamname):
        print(f"error: TEAMNAME='{args.teamname}' must be lowercase letters only (a-z)",
              file=sys.stderr)
        return 2
    labels = args.labels if args.labels and args.labels.is_dir() else None
    try:
        v = verify(args.tarball, args.teamname, args.task, args.samples, labels, args.daemon,
                   args.offline, args.timeout)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    v.print(out)
    if args.tarball.parent.is_dir():
        paths = report_paths(args.tarball, args.teamname, args.task)
        v.write(paths["md"], paths["json"])
        console.print(f"verdict written to {paths['md']} and {paths['json']}")
    if v.reminder:
        console.print(f"[bold]reminder:[/] {v.reminder}")
    if v.failed:
        first = v.failed[0]
        print(f"error: verify-load failed: {first.check}: {first.detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
