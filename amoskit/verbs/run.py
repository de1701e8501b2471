"""`make run`: run the image on a folder of cases exactly as the organisers' `docker run` line does.

Their line: docker run --rm --runtime=nvidia --ipc=host -e NVIDIA_VISIBLE_DEVICES=all --gpus 0
--user root -v IN:/workspace/input/:ro -v OUT:/workspace/output/ TEAMNAME python run_inference.py
plus their limits (4 CPUs, 30 GB). Here the network is off as well (their server has none), the
GPU is used only when this host has the NVIDIA runtime, and the outputs are handed to the user who
ran make afterwards. The settings are built by pure functions so tests check them as data.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from docker.errors import APIError, ImageNotFound
from requests.exceptions import RequestException
from rich.console import Console
from rich.table import Table

from amoskit import contract
from amoskit.daemon import connect as daemon
from amoskit.daemon import ownership

console = Console(highlight=False)


class RunRefused(Exception):
    """INPUT / OUTPUT cannot be used; the message is the one line shown to the user."""


def check_folders(input_dir: str | os.PathLike, output_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Absolute INPUT and OUTPUT, or RunRefused saying what is wrong (nothing is created here)."""
    inp, out = Path(input_dir).resolve(), Path(output_dir).resolve()
    if not inp.exists():
        raise RunRefused(f"INPUT={input_dir} does not exist: give a folder of *.nii.gz cases, "
                         f"e.g. make run INPUT=samples/images (make samples writes one)")
    if not inp.is_dir():
        raise RunRefused(f"INPUT={input_dir} is not a folder: give the folder that holds the "
                         f"*.nii.gz cases, not a file")
    if out == inp or inp in out.parents:
        raise RunRefused(f"OUTPUT={output_dir} is inside INPUT={input_dir}: the input is mounted "
                         f"read-only and must hold only cases; choose an OUTPUT outside it")
    if out.exists() and not out.is_dir():
        raise RunRefused(f"OUTPUT={output_dir} exists and is not a folder: choose another OUTPUT")
    return inp, out


def container_settings(image: str, input_dir: Path, output_dir: Path, host_cpus: int,
                       runtimes, command=contract.COMMAND) -> dict:
    """Keyword arguments for `client.containers.create` that reproduce the organisers' run under
    the server's limits. With the NVIDIA runtime it asks for every GPU (`--gpus all`): their
    `--gpus 0` is a request for zero GPUs to Docker, while their server is meant to give its one
    RTX 3090 (verify-load runs their exact line as well)."""
    return contract.OrganiserRun(
        image, input_dir, output_dir, nvidia="nvidia" in set(runtimes or ()), gpus="all",
        limits=contract.ServerLimits.on_host(host_cpus), command=tuple(command)).sdk()


def settings_table(s: dict, gpu: bool, host_cpus: int) -> Table:
    t = Table(title="make run", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("image", s["image"])
    t.add_row("command", " ".join(s["command"]) + "  (user root, --ipc=host, no network)")
    for host, m in s["volumes"].items():
        t.add_row(m["bind"], f"{host} ({'read-only' if m['mode'] == 'ro' else 'read-write'})")
    t.add_row("limits", f"{s['nano_cpus'] / 1e9:g} CPUs (host has {host_cpus}), memory {s['mem_limit']}")
    t.add_row("GPU", "all GPUs (NVIDIA runtime)" if gpu else "[yellow]none: CPU only[/]")
    return t


def run(image: str, input_dir: str, output_dir: str) -> int:
    inp, out = check_folders(input_dir, output_dir)
    client = daemon.connect()
    try:
        client.images.get(image)
    except ImageNotFound:
        raise RunRefused(f"image {image} not found: build it first with make build "
                         f"TEAMNAME={image.split(':')[0]}") from None
    info = client.info()
    host_cpus = int(info.get("NCPU") or os.cpu_count() or 1)
    runtimes = (info.get("Runtimes") or {}).keys()
    settings = container_settings(image, inp, out, host_cpus, runtimes)
    gpu = "runtime" in settings
    out.mkdir(parents=True, exist_ok=True)
    console.print(settings_table(settings, gpu, host_cpus))
    if not gpu:
        console.print("[yellow]notice:[/] this host's Docker has no NVIDIA runtime (install the "
                      "NVIDIA Container Toolkit for GPU runs): running on the CPU, much slower "
                      "than on the organisers' RTX 3090")
    start = time.monotonic()
    try:
        container = client.containers.create(**settings)
    except (APIError, RequestException) as exc:
        raise RunRefused(daemon.api_error_line(exc, f"create the container of {image}")) from None
    status = 1
    try:
        try:
            container.start()
        except (APIError, RequestException) as exc:
            raise RunRefused(daemon.api_error_line(exc, f"start the container of {image}")) \
                from None
        for chunk in container.logs(stream=True, follow=True):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        status = container.wait()["StatusCode"]
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping the container[/]")
        container.stop(timeout=5)
        status = 128 + signal.SIGINT
    finally:
        container.remove(force=True)
        ownership.hand_outputs_to(client, image, out, ownership.invoking_user())
    written = sorted(p.name for p in out.iterdir() if p.is_file())
    colour = "green" if status == 0 else "red"
    console.print(f"[{colour}]container exit status {status}[/] after {time.monotonic() - start:.1f} s; "
                  f"{len(written)} file(s) in {out}")
    return status


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="image to run, e.g. myteam:latest")
    p.add_argument("--input", required=True, help="folder of *.nii.gz cases (mounted read-only)")
    p.add_argument("--output", required=True, help="folder for the label maps")
    a = p.parse_args(argv)
    try:
        return run(a.image, a.input, a.output)
    except RunRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (APIError, RequestException) as exc:      # the engine failed mid-run
        print(f"error: {daemon.api_error_line(exc, f'run {a.image}')}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
