"""`make config VAR=value ...`: remember variables in local.mk (git-ignored), which the Makefile
reads before its defaults, so TEAMNAME and the rest are typed once. Stdlib only: it runs before
the virtualenv exists. Tests and CI never read local.mk (AMOSKIT_NO_LOCAL_MK=1).

    python3 -m amoskit.local_config local.mk TEAMNAME=myteam WEIGHTS=/data/model
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from amoskit.contract import teamname_problem

LINE = re.compile(r"^([A-Z_]+) *:?= ?(.*)$")
HEADER = ("# Written by `make config`; read by the Makefile before its defaults. Values given on\n"
          "# the make command line still win. Not read by tests or CI. Delete it to forget.\n")


def read(path: Path) -> dict[str, str]:
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            m = LINE.match(line)
            if m:
                values[m.group(1)] = m.group(2)
    return values


def write(path: Path, updates: dict[str, str], known: set[str]) -> dict[str, str]:
    """Merge updates into path (atomically); ValueError for an unknown variable or a bad value."""
    for key, value in updates.items():
        if key not in known:
            raise ValueError(f"{key} is not a variable of the Makefile (see `make help`)")
        if "\n" in value or "$" in value:
            raise ValueError(f"{key}: a value with a newline or '$' cannot be stored in {path}")
        if key == "TEAMNAME":
            problem = teamname_problem(value, "config")
            if problem:
                raise ValueError(problem)
    values = {**read(path), **updates}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(HEADER + "".join(f"{k} = {v}\n" for k, v in sorted(values.items())))
    os.replace(tmp, path)
    return values


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not all("=" in a for a in argv[2:]):
        print("usage: python3 -m amoskit.local_config LOCAL_MK KNOWN_VARS [VAR=value ...]",
              file=sys.stderr)
        return 2
    path, known = Path(argv[0]), set(argv[1].split())
    updates = dict(a.split("=", 1) for a in argv[2:])
    if not updates:
        print("error: nothing to remember: give variables, e.g. `make config TEAMNAME=myteam`",
              file=sys.stderr)
        return 2
    try:
        values = write(path, updates, known)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: " + ", ".join(f"{k}={v}" for k, v in sorted(values.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
