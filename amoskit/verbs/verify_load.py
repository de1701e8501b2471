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
6. a verdict table (also an HTML page with the pictures, Markdown and JSON beside the tarball),
   one PNG per case, and what to email.
Exit status 1 on any fail.

This module only orders the steps and says where to stop; each check is a function in
amoskit.verify (integrity, image_checks, load, runs, measures, outputs, deliver).
"""
from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console

from amoskit import contract
from amoskit.daemon import interrupts
from amoskit.tarball.budget import GB, UnpackBudget
from amoskit.verify import deliver, image_checks, integrity, load, outputs, runs
from amoskit.verify.progress import console
from amoskit.verify.report import INTEGRITY, LOAD, OUTPUTS, RUN, Verdict


def verify(tarball: Path, team: str, task: str, samples: Path | None, labels: Path | None,
           daemon_mode: str, offline: bool, timeout: float,
           image_store: str = "auto", budget: UnpackBudget | None = None,
           memory_limit: int = 0) -> Verdict:
    """All six steps; each stops the ones after it where the file or the image cannot be used."""
    files = contract.SubmissionFiles.of(tarball, team, task)
    v = Verdict(str(tarball), team)
    if not integrity.check_file(tarball, team, v):
        return v
    img = integrity.check_integrity(files, v, budget)
    if img is None:
        return skip_the_rest(v, files, "integrity failed: the file cannot be trusted")
    contents = image_checks.check_contents(img, team, v)
    altered = [r.check for r in v.failed if r.step == INTEGRITY]
    if altered:  # sha256, digest or manifest: readable, but not the image that was packaged
        return skip_the_rest(v, files, f"integrity failed ({', '.join(altered)}): loading and "
                                       f"running a file that is not the packaged image proves "
                                       f"nothing; re-run make package")
    if offline:
        return skip_the_rest(v, files, "--offline")
    samples = runs.check_samples(samples, v)
    work = runs.fresh_dir(files.report_dir)
    with ExitStack() as stack:
        loaded = load.load_image(tarball, team, img, daemon_mode, v, stack, image_store)
        if loaded is not None and samples is not None and runs.check_docker_cli(v):
            client, cli_env = loaded
            done = runs.run_checks(team, samples, client, cli_env, work, timeout, v,
                                   memory_limit)
            names = outputs.check_outputs(samples, labels, done, contents, work, v)
            deliver.check_previews(samples, labels, done["organisers"].output,
                                   work / "previews", v, names)
    deliver.check_short_paper(files, v)
    return v


def skip_the_rest(v: Verdict, files: contract.SubmissionFiles, why: str) -> Verdict:
    """A row for each step not taken (load, run, outputs), saying why; then the delivery check."""
    for step, check in ((LOAD, "docker load"), (RUN, "organisers' line"), (OUTPUTS, "output folder")):
        v.add(step, check, "skip", why)
    deliver.check_short_paper(files, v)
    return v


def report(v: Verdict, files: contract.SubmissionFiles) -> int:
    """The table on stdout, the Markdown + JSON beside the tarball; the exit status."""
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    v.print(out)
    if files.tarball.parent.is_dir():
        v.write(files.report_md, files.report_json, files.report_html)
        console.print(f"verdict written to {files.report_html} (open it in a browser: the "
                      f"pictures are inside), {files.report_md} and {files.report_json}")
    if v.reminder:
        console.print(f"[bold]reminder:[/] {v.reminder}")
    if v.failed:
        first = v.failed[0]
        print(f"error: verify-load failed: {first.check}: {first.detail}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tarball", type=Path)
    ap.add_argument("--teamname", required=True)
    ap.add_argument("--task", default=contract.DEFAULT_TASK)
    ap.add_argument("--samples", type=Path, default=Path("samples/images"))
    ap.add_argument("--labels", type=Path, default=Path("samples/labels"))
    ap.add_argument("--daemon", choices=("auto", "throwaway", "shared"), default="auto",
                    help="where to docker load: a throwaway dockerd (auto: when possible)")
    ap.add_argument("--store", choices=("auto", "classic", "containerd"), default="auto",
                    help="image store of the throwaway dockerd (auto: the same as your engine's; "
                         "containerd needs Docker 24+)")
    ap.add_argument("--offline", action="store_true", help="steps 1-2 only (no Docker)")
    ap.add_argument("--run-memory-gb", type=float, default=0,
                    help="memory bound (GiB, swap included) of the cgroup both runs are placed "
                         "in (default: this host's RAM less max(2 GiB, 10%%))")
    caps = UnpackBudget()
    ap.add_argument("--max-unpacked-gb", type=float, default=caps.max_bytes / GB,
                    help="refuse a file that unpacks to more GiB than this (a gzip bomb)")
    ap.add_argument("--max-ratio", type=float, default=caps.max_ratio,
                    help="refuse a file whose unpacked/compressed ratio exceeds this")
    ap.add_argument("--max-entries", type=int, default=caps.max_entries,
                    help="refuse a file with more entries (outer tar plus layers)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per container run")
    args = ap.parse_args(argv)
    problem = contract.teamname_problem(args.teamname, "verify-load")
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    labels = args.labels if args.labels and args.labels.is_dir() else None
    interrupts.interrupt_on_termination()  # any stop removes the throwaway daemon and its root
    try:
        budget = UnpackBudget(max_bytes=int(args.max_unpacked_gb * GB), max_ratio=args.max_ratio,
                              max_entries=args.max_entries)
        v = verify(args.tarball, args.teamname, args.task, args.samples, labels, args.daemon,
                   args.offline, args.timeout, args.store, budget,
                   int(args.run_memory_gb * GB))
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except runs.VerifyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        return report(v, contract.SubmissionFiles.of(args.tarball, args.teamname, args.task))
    except KeyboardInterrupt:          # stopped while writing the verdict: say so, no traceback
        print("error: interrupted while writing the verdict", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
