"""Who owns what a container wrote: the container runs as root (the organisers' `--user root`),
so its outputs are root's until handed to the user who ran the tool. One rule for every verb.
"""
from __future__ import annotations

import os
from pathlib import Path

from amoskit import contract


def invoking_user(env=None, uid: int | None = None, gid: int | None = None) -> tuple[int, int]:
    """The (uid, gid) who should own the outputs: the sudo caller when run through sudo."""
    env = os.environ if env is None else env
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if uid == 0 and env.get("SUDO_UID", "").isdigit():
        return int(env["SUDO_UID"]), int(env.get("SUDO_GID", env["SUDO_UID"]) or 0)
    return uid, gid


def hand_outputs_to(client, image: str, output_dir: Path, owner: tuple[int, int]) -> None:
    """chown what the container (root) wrote to the invoking user; done in a container so it
    also works when that user is not root on this host."""
    if owner == (0, 0):
        return
    client.containers.run(image, ["chown", "-R", f"{owner[0]}:{owner[1]}", contract.OUTPUT_MOUNT],
                          user="root", network_mode="none", remove=True, entrypoint=[],
                          volumes={str(output_dir): {"bind": contract.OUTPUT_MOUNT, "mode": "rw"}})
