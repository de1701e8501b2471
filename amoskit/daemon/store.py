"""Which Docker engine and image store a client talks to, and what that store calls an image.

Why: the classic store names an image by its config digest; the containerd image store (default
on a fresh Docker 29, a feature flag on 24-28) by its manifest or index digest, and no API there
returns the config digest. Every comparison of image IDs goes through `expected_id`.
"""
from __future__ import annotations

CONTAINERD = "containerd"
CLASSIC = "classic"
SNAPSHOTTER_DRIVER_TYPE = "io.containerd.snapshotter.v1"


def image_store(info: dict) -> str:
    """"containerd" when `docker info` says the containerd snapshotter holds images, else
    "classic" (DriverStatus carries driver-type io.containerd.snapshotter.v1 there)."""
    for pair in info.get("DriverStatus") or []:
        if len(pair) == 2 and pair[0] == "driver-type" and pair[1] == SNAPSHOTTER_DRIVER_TYPE:
            return CONTAINERD
    return CLASSIC


def describe(info: dict) -> str:
    """`Docker 26.1.5, containerd image store (overlayfs)` for verdicts and manifests."""
    store = image_store(info)
    return (f"Docker {info.get('ServerVersion', '?')}, {store} image store "
            f"({info.get('Driver', '?')})")


def expected_id(store: str, config_digest: str, target_digest: str) -> str:
    """The ID the store gives the image: its config digest on the classic store; on the
    containerd store the digest the tag points at (index.json's descriptor), '' when the file
    does not say (a classic-layout file: containerd then makes its own manifest)."""
    return config_digest if store == CLASSIC else target_digest
