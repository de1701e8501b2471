"""Step 2 of verify-load: what must (and must not) be inside a submission image, judged from its
saved layers alone.

Why: `docker load` and `docker run` do not complain about an image saved without its tag, one
whose ENTRYPOINT swallows `python run_inference.py`, one without weights, or one that ships the
team's cloud keys to the organisers. These checks read the image config and the merged layer
filesystem (amoskit.tarball.layers), so they need no Docker engine. Each check is one function
that adds its row to the Verdict; `check_contents` runs them in the verdict's order.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

from amosseg import model_choice, model_folder
from amosseg.settings import parse_folds

from amoskit import contract
from amoskit.image.report import min_driver
from amoskit.tarball.layers import KEEP_TEXT_SUFFIX, Entry, fs_kind, merge_layers, resolve_path
from amoskit.tarball.layout import Image
from amoskit.verify.report import CONTENTS, Verdict

ENTRYPOINT_PASSTHROUGH = {"/usr/bin/env", "env", "tini", "/usr/bin/tini", "/tini",
                          "dumb-init", "/usr/bin/dumb-init", "/usr/local/bin/dumb-init"}
WHEEL_ALLOWED = ("/usr/share/python-wheels/", "/ensurepip/_bundled/")
BIG_IMAGE_BYTES = 20e9
FS = dict[str, Entry]


@dataclass
class Contents:
    """What later steps need from the image: the model's dataset.json (its labels)."""
    dataset_json: dict | None = None
    workdir: str = "/"
    fs: FS = field(default_factory=dict)
    model: model_choice.Choice | None = None


def _env(config: dict) -> dict[str, str]:
    env = {}
    for item in (config.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    return env


def _which(fs: FS, name: str, path_var: str) -> tuple[str, str] | None:
    for d in (path_var or "/usr/local/bin:/usr/bin:/bin").split(":"):
        if not d:
            continue
        cand = posixpath.join(d, name)
        real = resolve_path(fs, cand)
        if real and real in fs and fs[real].kind in ("file", "hardlink"):
            return cand, real
    return None


def _all_paths(img: Image) -> set[str]:
    """Every path of every layer: what is shipped, including what a later layer deletes."""
    paths: set[str] = set()
    for m in img.layers:
        paths.update(m.layer)
    return paths


# --------------------------------------------------------------------------- the checks
def check_tag(img: Image, team: str, v: Verdict) -> None:
    want = f"{team}:latest"
    if want in img.tags:
        extra = [t for t in img.tags if t != want]
        v.add(CONTENTS, "tag", "pass", f"{want} is inside (tags: {', '.join(img.tags)})"
              + (f"; extra tags {extra}" if extra else ""))
    elif not img.tags:
        v.add(CONTENTS, "tag", "fail", f"no tag inside: the image was saved by id, so the "
                                       f"organisers' `docker run ... {team}` cannot find it; "
                                       f"package with `make package`")
    else:
        v.add(CONTENTS, "tag", "fail", f"{want} is not inside (tags: {', '.join(img.tags)}): "
                                       f"rebuild and package with TEAMNAME={team}")


def check_teamname(team: str, v: Verdict) -> None:
    problem = contract.teamname_problem(team, "verify-load")
    v.add(CONTENTS, "teamname", "fail" if problem else "pass", problem or team)


def check_platform(img: Image, v: Verdict) -> None:
    plat = f"{img.config.get('os', '?')}/{img.config.get('architecture', '?')}"
    v.add(CONTENTS, "platform", "pass" if plat == "linux/amd64" else "fail",
          plat if plat == "linux/amd64" else f"{plat}: the server runs linux/amd64 (build with "
                                             f"--platform linux/amd64)")


def check_entrypoint(img: Image, v: Verdict) -> None:
    ep = (img.config.get("config") or {}).get("Entrypoint") or []
    if not ep:
        v.add(CONTENTS, "entrypoint", "pass", "none: `python run_inference.py` runs as given")
    elif ep[0] in ENTRYPOINT_PASSTHROUGH or ep[-1] == "--":
        v.add(CONTENTS, "entrypoint", "warn", f"{ep}: passes the command through, but none is "
                                              f"safer")
    else:
        v.add(CONTENTS, "entrypoint", "fail", f"ENTRYPOINT {ep} would receive `python "
                                              f"run_inference.py` as arguments instead of "
                                              f"running it: remove the ENTRYPOINT")


def check_script(fs: FS, workdir: str, v: Verdict) -> None:
    script = posixpath.join(workdir, "run_inference.py")
    if fs_kind(fs, script) in ("file", "hardlink"):
        v.add(CONTENTS, "run_inference.py", "pass", f"{script} (WORKDIR {workdir})")
    else:
        v.add(CONTENTS, "run_inference.py", "fail", f"{script} is missing (WORKDIR {workdir}): "
                                                    f"`python run_inference.py` would fail")


def check_python(fs: FS, env: dict[str, str], v: Verdict) -> None:
    py = _which(fs, "python", env.get("PATH", ""))
    if py:
        v.add(CONTENTS, "python", "pass", f"{py[0]} -> {py[1]}")
    else:
        v.add(CONTENTS, "python", "fail", f"no `python` on PATH={env.get('PATH', '(unset)')} "
                                          f"inside the image")


def describe_model(fs: FS, model_dir: str, checkpoint: str = "", folds: str = "") -> tuple[model_choice.Choice, int]:
    """The engine's own choice of what runs from the model folder inside the image (with the image's
    FOLDS / CHECKPOINT), and the folder's bytes."""
    real = resolve_path(fs, model_dir) or model_dir
    prefix = real.rstrip("/") + "/"
    files = {}
    for path in fs:
        if path.startswith(prefix) and fs_kind(fs, path) in ("file", "hardlink"):
            files[path[len(prefix):]] = fs[resolve_path(fs, path)]

    def read_json(rel: str):
        text = files[rel].text
        if text is None:
            raise OSError(f"{rel} was not kept while scanning the layers")
        return json.loads(text)
    choice = model_choice.choose(files, read_json, lambda rel: files[rel].size,
                                 checkpoint or model_folder.CHECKPOINT, parse_folds(folds),
                                 posixpath.basename(real.rstrip("/")))
    return choice, sum(e.size for e in files.values())


def runs_our_engine(fs: FS, workdir: str) -> bool:
    """Built by make build: our engine beside run_inference.py. Other teams' images read their
    weights their own way, and the organisers prescribe no format."""
    return fs_kind(fs, posixpath.join(workdir, "amosseg", "runner.py")) in ("file", "hardlink")


def check_weights(choice: model_choice.Choice, model_bytes: int, model_dir: str, v: Verdict,
                  ours: bool = True) -> None:
    """As the engine will load it, with the image's own FOLDS / CHECKPOINT (its ENV). In an
    image without our engine, a folder we cannot read is information, not a failure."""
    if choice.ok:
        v.add(CONTENTS, "weights", "pass", f"{model_dir}: {choice.summary()}, "
                                           f"{model_bytes / 1e6:,.1f} MB", model_dir=model_dir)
    elif ours:
        v.add(CONTENTS, "weights", "fail", f"{model_dir}: {choice.problem}")
    else:
        v.add(CONTENTS, "weights", "info", f"{model_dir}: not a model folder verify-load reads "
                                           f"({choice.problem.split(':')[0]}); this image does not "
                                           f"run our engine and the organisers prescribe no weights "
                                           f"format: the runs below are the test")


TORCH_VERSION_RE = re.compile(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", re.M)
TORCH_CUDA_RE = re.compile(r"^cuda\s*(?::[^=]*)?=\s*(?:['\"]([^'\"]+)['\"]|None)", re.M)


def torch_builds(fs: FS) -> list[tuple[str, str, str | None]]:
    """(path, torch version, CUDA version or None) of every torch in the merged filesystem,
    from its torch/version.py (kept while the layers streamed past)."""
    out = []
    for path, e in sorted((p, e) for p, e in fs.items() if p.endswith(KEEP_TEXT_SUFFIX)):
        if e.text is not None:
            text = e.text.decode("utf-8", "replace")
            ver, cuda = TORCH_VERSION_RE.search(text), TORCH_CUDA_RE.search(text)
            out.append((path.removesuffix("/version.py"), ver.group(1) if ver else "?",
                        cuda.group(1) if cuda else None))
    return out


def check_torch_cuda(fs: FS, v: Verdict) -> None:
    """Which NVIDIA driver the image's torch needs. The server's driver is unknown (an RTX 3090
    server set up for a 2022 challenge): CUDA 11.x builds run from 450.80, 12.x need 525.60,
    13.x need 580."""
    builds = torch_builds(fs)
    if not builds:
        v.add(CONTENTS, "torch / CUDA", "info", "no torch in the image (another framework: "
                                                "the runs below are the test)")
        return
    path, ver, cuda = builds[0]
    also = f" (also {', '.join(b[1] for b in builds[1:])})" if builds[1:] else ""
    need = min_driver(cuda)
    if not cuda:
        v.add(CONTENTS, "torch / CUDA", "warn", f"torch {ver} at {path} is a CPU-only build: it "
                                                f"never uses the server's GPU{also}")
    elif int(cuda.split(".")[0]) >= 12:
        v.add(CONTENTS, "torch / CUDA", "warn", f"torch {ver} (CUDA {cuda}) needs an NVIDIA "
                                                f"driver {need}; the server's driver is unknown "
                                                f"and may be older: a CUDA 11.8 build runs from "
                                                f"450.80.02{also}")
    else:
        v.add(CONTENTS, "torch / CUDA", "pass", f"torch {ver} (CUDA {cuda}), needs an NVIDIA "
                                                f"driver {need}{also}")


def check_secrets(img: Image, fs: FS, v: Verdict) -> None:
    """In any layer, even if a later layer deletes them (the bytes are still shipped)."""
    hits = []
    for m in img.layers:
        for path, e in m.layer.items():
            if e.secrets:
                gone = " (deleted by a later layer, still shipped)" if path not in fs else ""
                hits.append(f"{path}: {', '.join(e.secrets)}{gone}")
    if hits:
        v.add(CONTENTS, "secrets", "fail", f"{len(hits)} file(s) with credentials: "
              + "; ".join(hits[:3]) + (" ..." if len(hits) > 3 else "")
              + " - remove them and rebuild (.dockerignore)", files=hits)
    else:
        v.add(CONTENTS, "secrets", "pass", "no private keys, cloud or service tokens (detect-secrets "
                                           "rules, Hugging Face, GCP) or .env secrets in any text "
                                           "file (checked by content)")


def check_git_env(paths: set[str], v: Verdict) -> None:
    gits = sorted({"/".join(p.split("/")[: p.split("/").index(".git") + 1])
                   for p in paths if ".git" in p.split("/")})
    envs = sorted(p for p in paths if posixpath.basename(p) == ".env")
    if gits or envs:
        v.add(CONTENTS, ".git / .env", "fail", "found " + ", ".join((gits + envs)[:5]) +
              ": add them to .dockerignore and rebuild")
    else:
        v.add(CONTENTS, ".git / .env", "pass", "none")


def check_wheelhouse(paths: set[str], v: Verdict) -> None:
    wheelhouse = sorted({"/".join(p.split("/")[: p.split("/").index("wheelhouse") + 1])
                         for p in paths if "wheelhouse" in p.split("/")})
    wheels = [p for p in paths if p.endswith(".whl") and not any(a in p for a in WHEEL_ALLOWED)]
    if wheelhouse or wheels:
        v.add(CONTENTS, "wheelhouse", "fail", f"{len(wheelhouse) + len(wheels)} wheelhouse "
                                              f"path(s)/wheel file(s), e.g. "
                                              f"{(wheelhouse + wheels)[0]}: installed packages "
                                              f"suffice, do not ship the wheels")
    else:
        v.add(CONTENTS, "wheelhouse", "pass", "no wheelhouse or stray wheels")


def check_size(img: Image, fs: FS, v: Verdict) -> None:
    size = sum(m.size if m.compression == "" else 0 for m in img.layers) or \
        sum(e.size for e in fs.values())
    v.add(CONTENTS, "size", "warn" if size > BIG_IMAGE_BYTES else "pass",
          f"{size / 1e9:.2f} GB uncompressed in {len(img.layers)} layers", bytes=size)


# --------------------------------------------------------------------------- step 2
def check_contents(img: Image, team: str, v: Verdict) -> Contents:
    """All step-2 rows, in the verdict's order; returns what steps 3-5 need."""
    fs = merge_layers(m.layer for m in img.layers)
    env = _env(img.config)
    workdir = (img.config.get("config") or {}).get("WorkingDir") or "/"
    model_dir = env.get("MODEL_DIR") or posixpath.join(workdir, "weights")
    model, model_bytes = describe_model(fs, model_dir, env.get("CHECKPOINT", ""), env.get("FOLDS", ""))
    paths = _all_paths(img)
    check_tag(img, team, v)
    check_teamname(team, v)
    check_platform(img, v)
    check_entrypoint(img, v)
    check_script(fs, workdir, v)
    check_python(fs, env, v)
    check_weights(model, model_bytes, model_dir, v, runs_our_engine(fs, workdir))
    check_torch_cuda(fs, v)
    check_secrets(img, fs, v)
    check_git_env(paths, v)
    check_wheelhouse(paths, v)
    check_size(img, fs, v)
    return Contents(model.dataset, workdir, fs, model)
