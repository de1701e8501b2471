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

from amoskit.daemon import store
from amoskit.tarball.layout import Image
from amoskit.verify.progress import bytes_progress
from amoskit.verify.report import LOAD, Verdict


def host_store() -> str:
    """The image store of the user's own engine (classic when it cannot be asked)."""
    from amoskit.daemon import connect
    client, _ = connect.try_connect(timeout=10)
    if client is None:
        return store.CLASSIC
    try:
        return store.image_store(client.info())
    finally:
        client.close()


def check_daemon(daemon_mode: str, stack: ExitStack, v: Verdict, image_store: str = "auto"):
    """A Docker client to load into: (client, cli_env, throwaway root or None), or None. The
    throwaway daemon uses image_store (auto: the same store as the user's engine)."""
    import docker
    from amoskit.daemon import throwaway
    if daemon_mode in ("auto", "throwaway"):
        try:
            kind = host_store() if image_store == "auto" else image_store
            d = stack.enter_context(throwaway.ThrowawayDaemon(store=kind))
            client = docker.DockerClient(base_url=d.url, timeout=3600)
            v.add(LOAD, "daemon", "pass", f"throwaway dockerd: {store.describe(client.info())}, "
                                          f"{d.isolation}, empty data root {d.root}, like the "
                                          f"organisers' server")
            return client, d.env(), d.root
        except throwaway.DaemonUnavailable as exc:
            if daemon_mode == "throwaway":
                v.add(LOAD, "daemon", "fail", f"throwaway dockerd could not start: {exc}")
                return None
            v.add(LOAD, "daemon", "warn", f"SHARED-DAEMON MODE: no throwaway dockerd ({exc}); "
                                          f"loading into your own engine, which does not re-read "
                                          f"layers it already holds (the offline layer digests "
                                          f"above prove the file's content instead). For the "
                                          f"clean room run it as root: `sudo make verify-load`")
    from amoskit.daemon import connect
    client, reason = connect.try_connect(timeout=3600)
    if client is None:
        v.add(LOAD, "docker load", "fail", reason)
        return None
    if daemon_mode == "shared":
        v.add(LOAD, "daemon", "warn", f"load NOT clean: shared engine chosen (--daemon shared, "
                                      f"{store.describe(client.info())}); layers that already "
                                      f"exist are not re-checked by Docker")
    return client, dict(os.environ), None


UNPACK_ERROR = "Error unpacking image"


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
                line = ((msg or {}).get("stream", "") if isinstance(msg, dict) else str(msg))
                if UNPACK_ERROR in line:
                    # containerd store, Docker 27.2+: a layer that does not unpack (wrong diff
                    # id) is only a stream line and the load "succeeds"
                    raise RuntimeError(line.strip())
                messages.append(line.strip())
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
    kind = store.image_store(client.info())
    want = store.expected_id(kind, img.config_digest, img.target_digest)
    layers = (got.attrs.get("RootFS") or {}).get("Layers") or []
    if layers != [m.diff_id for m in img.layers]:
        v.add(LOAD, "tag resolves", "fail", f"{ref} -> {got.id[:19]}..., whose {len(layers)} "
                                            f"layers are not the {len(img.layers)} packaged ones")
        return False
    if want and got.id != want:
        what = "config digest" if kind == store.CLASSIC else "manifest digest in index.json"
        v.add(LOAD, "tag resolves", "fail", f"{ref} -> {got.id[:19]}..., expected the file's "
                                            f"{what} {want[:19]}... ({kind} image store)")
        return False
    how = (f"the file's {'config' if kind == store.CLASSIC else 'manifest'} digest"
           if want else "the containerd store's own manifest for a classic-layout file; "
                        "layers compared")
    v.add(LOAD, "tag resolves", "pass", f"{ref} -> {got.id[:19]}... ({how}), {len(layers)} "
                                        f"layers as packaged")
    return True


LOAD_SPACE_FACTOR = 2      # docker load untars to <data-root>/tmp, then into the store


def check_free_space(client, root: Path | None, img: Image, v: Verdict) -> bool:
    """About twice the unpacked size free where the daemon keeps its data, before loading."""
    import shutil
    where = root or Path(client.info().get("DockerRootDir") or "/var/lib/docker")
    try:
        free = shutil.disk_usage(where).free
    except OSError:
        v.add(LOAD, "free space", "info", f"{where} not readable here: free space not checked")
        return True
    need = LOAD_SPACE_FACTOR * img.unpacked_bytes
    if free < need:
        v.add(LOAD, "free space", "fail", f"{free / 1e9:.1f} GB free at {where}, the load needs "
                                          f"about {need / 1e9:.1f} GB (twice the unpacked "
                                          f"{img.unpacked_bytes / 1e9:.1f} GB): free space there"
                                          + (" or point TMPDIR at a larger disk" if root else ""))
        return False
    v.add(LOAD, "free space", "pass", f"{free / 1e9:.1f} GB free at {where}, about "
                                      f"{need / 1e9:.1f} GB needed")
    return True


def load_image(tarball: Path, team: str, img: Image, daemon_mode: str, v: Verdict,
               stack: ExitStack, image_store: str = "auto"):
    """Step 3: (client, cli_env) for step 4, or None when the image is not usable there."""
    daemon = check_daemon(daemon_mode, stack, v, image_store)
    if daemon is None:
        return None
    client, cli_env, root = daemon
    if not check_free_space(client, root, img, v):
        return None
    if not check_docker_load(client, tarball, v) or not check_tag_resolves(client, team, img, v):
        return None
    return client, cli_env
