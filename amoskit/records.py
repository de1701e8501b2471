"""Typed records of the files one verb writes and another reads, so names and keys live in one place.

- PackageManifest: `TEAMNAME-TASK.tar.gz.manifest.json`, written by `make package`, read by
  `make verify-load` (is the tarball the packaged image?) and the packaging benchmark.
- The sha256 sidecar: one `sha256sum` line (`write_sha256_line` / `read_sha256_line`).
The engine's run metrics (METRICS_FILE) are the engine's record: amosseg.run_metrics.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


@dataclass
class PackageManifest:
    """What `make package` saved: the file, its hash, and the image inside it."""
    file: str
    teamname: str
    task: str
    sha256: str
    compressed_bytes: int
    uncompressed_bytes: int
    image_id: str                 # what the engine calls it (config digest, or on the
    config_digest: str            # containerd store the tag's target); config: measured
    layer_diff_ids: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    all_local_tags: list[str] = field(default_factory=list)
    image_created: str | None = None
    image_revision: str | None = None
    image_version: str | None = None
    architecture: str | None = None
    os: str | None = None
    image_size_bytes: int | None = None
    version: str = "unknown"
    git_commit: str = "unknown"
    packaged_at: str = ""
    compressor: str = ""
    seconds: float = 0.0
    target_digest: str = ""       # index.json's descriptor for the tag ('' in a classic save)
    saved_layout: str = ""        # classic or oci, as docker save wrote it
    engine: str = ""              # "Docker 26.1.5, containerd image store (overlayfs)"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: dict) -> "PackageManifest":
        """Read a manifest (unknown keys ignored; ValueError when a required key is absent)."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ValueError(f"incomplete manifest ({exc})") from None

    @classmethod
    def read(cls, path: Path) -> "PackageManifest":
        """ValueError when unreadable as a manifest; OSError when the file cannot be read."""
        return cls.from_dict(json.loads(Path(path).read_text()))


def sha256_line(hexdigest: str, filename: str) -> str:
    """The sidecar's content: `sha256sum` format, so `sha256sum -c` checks the file too."""
    return f"{hexdigest}  {filename}\n"


def read_sha256_line(text: str) -> tuple[str, str]:
    """(lower-case digest, file name or '') from a sidecar; the digest is '' when malformed."""
    parts = text.split()
    want = parts[0].lower() if parts else ""
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        want = ""
    return want, (parts[1].lstrip("*") if len(parts) > 1 else "")
