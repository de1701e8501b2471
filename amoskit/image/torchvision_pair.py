"""The torchvision release built for a torch release (the image's TORCH_VERSION).

Why: Primus networks need timm, and timm imports torchvision, whose compiled operators load only
beside the torch they were built against: torch 2.N.P pairs with torchvision 0.(N+15).P (every
release since torch 2.1), with the same local build label (`+cu118`) so both come from one index.
Used by make wheelhouse (this module's command line) and by make build (the builder's build argument).

    python -m amoskit.image.torchvision_pair 2.7.1+cu118   ->   0.22.1+cu118
"""
from __future__ import annotations

import re
import sys

VERSION = re.compile(r"^2\.(\d+)(?:\.(\d+))?(\+[\w.]+)?$")


class NoTorchvisionPair(ValueError):
    """TORCH_VERSION has no torchvision release we know to pair with it."""


def torchvision_for(torch_version: str) -> str:
    """'2.7.1+cu118' -> '0.22.1+cu118'; torch older than 2.1 (irregular pairs) is refused in one line."""
    m = VERSION.match(torch_version.strip())
    if not m or int(m.group(1)) < 1:
        raise NoTorchvisionPair(f"TORCH_VERSION={torch_version}: no torchvision pairs with it by the rule of torch 2.1 "
                                "and newer (2.N.P -> 0.(N+15).P); Primus networks need torchvision: use torch >= 2.1")
    minor, patch, local = int(m.group(1)), m.group(2) or "0", m.group(3) or ""
    return f"0.{minor + 15}.{patch}{local}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m amoskit.image.torchvision_pair TORCH_VERSION", file=sys.stderr)
        return 2
    try:
        print(torchvision_for(args[0]))
    except NoTorchvisionPair as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
