"""A cgroup that bounds the memory of the containers verify-load runs, below this host's RAM.

Why: the organisers' line sets no memory limit, and it must be run flag for flag. On a host with
less RAM than their server, an image that allocates too much then wakes the kernel's global OOM
killer, which may pick any process of the host. Placing the container under a parent cgroup
(`--cgroup-parent`, bookkeeping: nothing inside the container changes) whose memory limit sits
below the host's RAM, swap included, makes such an image fail its own container instead.
Works with Docker's cgroupfs driver on cgroup v1 and v2; the systemd driver names slices
through systemd, and there the run goes unbounded (the verdict says so).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
GiB = 1 << 30


def host_memory_bytes() -> int:
    """This machine's RAM (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def default_limit(host: int) -> int:
    """What the host can give a container and still live: its RAM less max(2 GiB, 10 %)."""
    return max(host - max(2 * GiB, host // 10), 256 << 20)


class MemoryBound:
    """Context manager: `.parent` is the value for `--cgroup-parent` ('' when no bound could be
    set, `.why` then says why); the cgroup is removed on exit."""

    def __init__(self, name: str, limit_bytes: int, cgroup_driver: str = "cgroupfs",
                 root: Path = CGROUP_ROOT):
        self.name = name
        self.limit = limit_bytes
        self.driver = cgroup_driver
        self.root = root
        self.parent = ""
        self.why = ""
        self.made: list[Path] = []

    @property
    def v2(self) -> bool:
        return (self.root / "cgroup.controllers").exists()

    def __enter__(self) -> "MemoryBound":
        if self.driver != "cgroupfs":
            self.why = (f"the engine uses the {self.driver} cgroup driver: the run is not "
                        f"bounded below this host's RAM")
            return self
        try:
            self.remove_stale()
            if self.v2:
                if "memory" not in (self.root / "cgroup.subtree_control").read_text().split():
                    raise OSError("the memory controller is not enabled for child cgroups")
                d = self.root / self.name
                d.mkdir(exist_ok=True)
                self.made.append(d)
                (d / "memory.max").write_text(str(self.limit))
                if (d / "memory.swap.max").exists():
                    (d / "memory.swap.max").write_text("0")
            else:
                d = self.root / "memory" / self.name
                d.mkdir(exist_ok=True)
                self.made.append(d)
                (d / "memory.limit_in_bytes").write_text(str(self.limit))
                if (d / "memory.memsw.limit_in_bytes").exists():   # swap accounting on
                    (d / "memory.memsw.limit_in_bytes").write_text(str(self.limit))
                if (d / "memory.swappiness").exists():
                    try:
                        (d / "memory.swappiness").write_text("0")
                    except OSError:
                        pass
        except OSError as exc:
            self.__exit__()
            self.why = f"no memory bound ({exc.strerror or exc}): the run is not bounded"
            return self
        self.parent = "/" + self.name
        return self

    def _dirs(self, name: str) -> list[Path]:
        """The cgroup folders called name: v2 one, v1 one per controller the engine used."""
        if self.v2:
            return [self.root / name]
        return sorted({p.resolve() for p in self.root.glob(f"*/{name}")})

    def remove_stale(self) -> None:
        """Bounds of earlier runs that were killed (their verify-load pid is gone)."""
        prefix = self.name.rsplit("-", 1)[0] + "-"
        pattern = f"{prefix}*" if self.v2 else f"*/{prefix}*"
        for d in self.root.glob(pattern):
            pid = d.name.removeprefix(prefix)
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                self._remove([d], tries=1)

    def __exit__(self, *exc) -> None:
        """Remove the cgroup (and what the engine made under the same name in other v1
        controllers), once the containers in it are gone (their own cgroups go a moment after
        they exit: up to 30 s is waited for)."""
        self._remove(list(dict.fromkeys(self.made + self._dirs(self.name))), tries=120)
        self.made = []
        self.parent = ""

    @staticmethod
    def _remove(dirs: list[Path], tries: int) -> None:
        for d in dirs:
            for _ in range(tries):
                try:
                    for child in sorted(d.iterdir()):     # leftover empty child cgroups
                        if child.is_dir():
                            child.rmdir()
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.25)
