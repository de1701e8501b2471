"""Step 3 of verify-load: `docker load` into an empty daemon, as on the organisers' server, and
the tag resolving to the packaged image.

Why a throwaway daemon: on the build host the layers already exist and the tag already resolves,
so a load there proves little (amoskit.daemon.throwaway). Each check adds its rows to the
Verdict; `load_image` runs them and returns (client, CLI environment) or None.
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack
from pathlib import Path

from amoskit.tarball.layout import Image
from amoskit.verify.progress import bytes_progress
from amoskit.verify.report import LOAD, Verdict


def check_daemon(daemon_mode: str, stack: ExitStack, v: Verdict):
    """A Docker client to load into: (client, cli_env), or None when there is none."""
    import docker
    from amoskit.daemon import throwaway
    if daemon_mode in ("auto", "throwaway"):
        try:
            d = stack.enter_context(throwaway.ThrowawayDaemon())
            v.add(LOAD, "daemon", "pass", f"throwaway dockerd (empty data root {d.root}), like "
                                          f"the organisers' server")
            return docker.DockerClient(base_url=d.url, timeout=3600), d.env()
        except throwaway.DaemonUnavailable as exc:
            if daemon_mode == "throwaway":
                v.add(LOAD, "daemon", "fail", f"throwaway dockerd could not start: {exc}")
                return None
            v.add(LOAD, "daemon", "warn", f"load NOT clean: no throwaway dockerd ({exc}); "
                                          f"loading into the shared engine, where the layers may "
                                          f"already exist")
    from amoskit.daemon import connect
    client, reason = connect.try_connect(timeout=3600)
    if client is None:
        v.add(LOAD, "docker load", "fail", reason)
        return None
    if daemon_mode == "shared":
        v.add(LOAD, "daemon", "warn", "load NOT clean: shared engine chosen (--daemon shared); "
                                      "layers that already exist are not re-checked by Docker")
    return client, dict(os.environ)


def check_docker_load(client, tarball: Path, v: Verdict) -> bool:
    """Stream the file into the engine, as `docker load < file` does."""
    size = tarball.stat().st_size
    start = time.monotonic()
    messages = []
    try:
        with bytes_progress("docker load") as prog, open(tarball, "rb") as fh:
            task = prog.add_task("load", total=size)

            def chunks():
                while True:
                    b = fh.read(1 << 20)
                    if not b:
                        return
                    prog.advance(task, len(b))
                    yield b
            for msg in client.api.load_image(chunks()):
                if isinstance(msg, dict) and msg.get("error"):
                    raise RuntimeError(msg["error"])
                messages.append((msg or {}).get("stream", "").strip() if isinstance(msg, dict)
                                else str(msg))
    except Exception as exc:  # noqa: BLE001 - any engine error is the verdict
        v.add(LOAD, "docker load", "fail", f"docker load failed: "
                                           f"{str(exc).splitlines()[0][:300]}")
        return False
    loaded = "; ".join(m for m in messages if m)
    v.add(LOAD, "docker load", "pass", f"{loaded or 'loaded'} in "
                                       f"{time.monotonic() - start:.1f} s")
    return True


def check_tag_resolves(client, team: str, img: Image, v: Verdict) -> bool:
    """TEAMNAME:latest names the packaged config and layers, not some other image."""
    from docker.errors import ImageNotFound
    ref = f"{team}:latest"
    try:
        got = client.images.get(ref)
    except ImageNotFound:
        v.add(LOAD, "tag resolves", "fail", f"after loading, {ref} does not resolve: the file "
                                            f"has no such tag")
        return False
    layers = (got.attrs.get("RootFS") or {}).get("Layers") or []
    if got.id == img.config_digest and layers == [m.diff_id for m in img.layers]:
        v.add(LOAD, "tag resolves", "pass", f"{ref} -> {got.id[:19]}..., {len(layers)} layers "
                                            f"as packaged")
        return True
    v.add(LOAD, "tag resolves", "fail", f"{ref} -> {got.id[:19]}..., expected "
                                        f"{img.config_digest[:19]}... with the packaged layers")
    return False


def load_image(tarball: Path, team: str, img: Image, daemon_mode: str, v: Verdict,
               stack: ExitStack):
    """Step 3: (client, cli_env) for step 4, or None when the image is not usable there."""
    daemon = check_daemon(daemon_mode, stack, v)
    if daemon is None:
        return None
    client, _ = daemon
    if not check_docker_load(client, tarball, v) or not check_tag_resolves(client, team, img, v):
        return None
    return daemon
