"""The light host (`make setup`, requirements-host.txt): the verbs a user runs never need torch.

Each verb module runs its --help in a fresh interpreter where torch, nnU-Net and the other
packages only requirements-dev.txt brings are unimportable; a module that imports torch on purpose
fails the same harness (so this test can fail). A static walk of every import the verbs can reach,
function-level ones included, catches what --help never executes. The Makefile's verbs depend on
the light stamp only, the torch targets on the full one; README's tables match `make help`.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO

pytestmark = pytest.mark.contract

# torch and what only the full set (requirements-dev*.txt) brings: the verbs import none of them
HEAVY = ("torch", "nnunetv2", "dynamic_network_architectures")
FULL_ONLY = HEAVY + ("nibabel", "pandas", "sklearn", "skimage", "batchgenerators", "batchgeneratorsv2",
                     "acvl_utils", "blosc2", "einops", "seaborn", "cc3d", "pytest", "sympy", "networkx")
# module -> the arguments of a run that proves it starts (argparse verbs: --help)
VERBS = {
    "amoskit.verbs.build": ["--help"],
    "amoskit.verbs.run": ["--help"],
    "amoskit.verbs.package": ["--help"],
    "amoskit.verbs.verify_load": ["--help"],
    "amoskit.verbs.validate": ["--help"],
    "amoskit.data.samples": ["--help"],
    "amoskit.contract": ["teamname", "demoteam", "build"],      # make check-teamname
    "amoskit.local_config": [],                                   # make config: its usage line, exit 2
}
EXIT = {"amoskit.local_config": 2}
LIGHT_TARGETS = ("setup", "samples", "wheelhouse", "build", "run", "package", "verify-load", "validate")
FULL_TARGETS = ("setup-dev", "test", "train-demo", "evaluate-demo", "bench-inference", "bench-package",
                "bench-build", "bench-kinds", "kinds-end-to-end", "nnunet-zoo")

# Runs `python -m MODULE ARGS...` with the blocked packages unimportable: any import of them (at
# module level or optional, try/except ImportError ones included) raises ModuleNotFoundError.
HARNESS = textwrap.dedent("""
    import importlib.abc, runpy, sys
    blocked, module, args = set(sys.argv[1].split(",")), sys.argv[2], sys.argv[3:]
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked: not on the light host)",
                                          name=name)
    sys.meta_path.insert(0, Block())
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        leaked = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)
        if leaked:
            print(f"blocked modules in sys.modules: {leaked}", file=sys.stderr)
            sys.exit(3)
""")


def run_blocked(module: str, args: list[str], extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env_path = [str(REPO)] + ([str(extra_path)] if extra_path else [])
    code = f"import sys; sys.path[:0] = {env_path!r}\n" + HARNESS
    return subprocess.run([sys.executable, "-c", code, ",".join(FULL_ONLY), module, *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", sorted(VERBS))
def test_verb_starts_without_torch(module):
    proc = run_blocked(module, VERBS[module])
    assert proc.returncode == EXIT.get(module, 0), f"{module}:\n{proc.stdout}\n{proc.stderr}"
    if VERBS[module] == ["--help"]:
        assert "usage:" in proc.stdout
    else:
        assert "Traceback" not in proc.stderr, proc.stderr


def test_harness_fails_a_module_that_imports_torch(tmp_path):
    (tmp_path / "uses_torch_on_purpose.py").write_text(
        "import argparse\nimport torch\nargparse.ArgumentParser().parse_args()\n")
    proc = run_blocked("uses_torch_on_purpose", ["--help"], extra_path=tmp_path)
    assert proc.returncode != 0 and "usage:" not in proc.stdout
    assert "No module named 'torch' (blocked" in proc.stderr, proc.stderr
    # and a real module of this repository that needs torch is refused too
    proc = run_blocked("amoskit.data.train_demo", ["--help"])
    assert proc.returncode != 0 and "No module named 'torch' (blocked" in proc.stderr, proc.stderr


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec and spec.origin
    if origin and origin.endswith(".py") and Path(origin).resolve().is_relative_to(REPO):
        return Path(origin)
    return None


def reachable_imports(roots: list[str]) -> dict[str, list[str]]:
    """Every top-level package imported by any statement, function-level ones included, of the
    modules of this repository reachable from `roots`: {package: [where, ...]}."""
    seen, todo, found = set(), list(roots), {}
    while todo:
        mod = todo.pop()
        path = _module_file(mod)
        if mod in seen or path is None:
            continue
        seen.add(mod)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                top = name.partition(".")[0]
                if top in ("amoskit", "amosseg"):
                    todo.extend(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2))
                else:
                    found.setdefault(top, []).append(f"{mod}:{node.lineno}")
    return found


def test_no_import_of_the_verbs_reaches_torch():
    found = reachable_imports(list(VERBS))
    heavy = {k: v for k, v in found.items() if k in FULL_ONLY}
    assert not heavy, f"the verbs reach packages of the full set only: {heavy}"
    assert {"docker", "numpy", "SimpleITK", "rich"} <= set(found)      # the walk does see imports


def requirement_names(path: Path, constraints: dict[str, str] | None = None) -> dict[str, str | None]:
    """{normalised name: pinned version or None} of a requirements file; -c files fill `constraints`."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("-c") and constraints is not None:
            constraints.update(requirement_names(REPO / line[2:].strip()))
        elif line and not line.startswith("-"):
            name, _, version = line.partition("==")
            out[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip() or None
    return out


def test_light_requirements_are_pinned():
    """Each package of requirements-host.txt has one version: its own `==` or the image's (-c)."""
    constraints: dict[str, str] = {}
    names = requirement_names(REPO / "requirements-host.txt", constraints)
    assert {"docker", "numpy", "simpleitk", "scipy", "matplotlib", "rich", "isal", "detect-secrets"} <= set(names)
    unpinned = [n for n, v in names.items() if v is None and not constraints.get(n)]
    assert not unpinned, f"requirements-host.txt: no version for {unpinned}"
    assert not set(names) & {"torch", "nnunetv2", "pytest"}


def makefile_prerequisites() -> dict[str, str]:
    text = (REPO / "Makefile").read_text()
    return {m[1]: m[2] for m in re.finditer(r"^([a-z-]+):([^#\n]*)", text, re.M)}


def test_makefile_verbs_need_the_light_stamp_only():
    rules = makefile_prerequisites()
    for target in LIGHT_TARGETS:
        assert "$(HOST_STAMP)" in rules[target].split() and "$(FULL_STAMP)" not in rules[target], target
    for target in FULL_TARGETS:
        assert "$(FULL_STAMP)" in rules[target].split(), target
    assert "setup" in rules["demo"].split()


def test_readme_tables_name_what_make_help_lists():
    """README's target and variable tables and `make help` (the Makefile's `## ` lines) agree."""
    proc = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    targets, variables = proc.stdout.split("Variables")
    readme = (REPO / "README.md").read_text()

    def table(section: str) -> set[str]:
        body = readme.split(f"\n## {section}\n")[1].split("\n## ")[0]
        return set(re.findall(r"^\| `([A-Za-z_-]+)` \|", body, re.M))

    assert table("Targets") == {ln.split()[0] for ln in targets.splitlines()[1:] if ln.strip()}
    assert table("Variables") == {ln.split()[0] for ln in variables.splitlines()[1:] if ln.strip()}
