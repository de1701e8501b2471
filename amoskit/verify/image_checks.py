"""What must (and must not) be inside a submission image, judged from its saved layers alone.

Why: `docker load` and `docker run` do not complain about an image saved without its tag, one
whose ENTRYPOINT swallows `python run_inference.py`, one without weights, or one that ships the
team's cloud keys to the organisers. These checks read the image config and the merged layer
filesystem that `image_tarball` produced, so they need no Docker engine.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass, field

from amoskit.tarball.reader import Entry, Image, fs_kind, merge_layers, resolve_path

TEAMNAME_RE = re.compile(r"^[a-z]+$")
ENTRYPOINT_PASSTHROUGH = {"/usr/bin/env", "env", "tini", "/usr/bin/tini", "/tini",
                          "dumb-init", "/usr/bin/dumb-init", "/usr/local/bin/dumb-init"}
WHEEL_ALLOWED = ("/usr/share/python-wheels/", "/ensurepip/_bundled/")
BIG_IMAGE_BYTES = 20e9


@dataclass
class Finding:
    check: str
    status: str
    detail: str
    data: dict = field(default_factory=dict)


@dataclass
class Contents:
    """Findings plus what later steps need (the model's labels)."""
    findings: list[Finding]
    dataset_json: dict | None = None
    workdir: str = "/"
    fs: dict[str, Entry] = field(default_factory=dict)


def _env(config: dict) -> dict[str, str]:
    env = {}
    for item in (config.get("config") or {}).get("Env") or []:
        k, _, v = item.partition("=")
        env[k] = v
    return env


def _which(fs: dict[str, Entry], name: str, path_var: str) -> tuple[str, str] | None:
    for d in (path_var or "/usr/local/bin:/usr/bin:/bin").split(":"):
        if not d:
            continue
        cand = posixpath.join(d, name)
        real = resolve_path(fs, cand)
        if real and real in fs and fs[real].kind in ("file", "hardlink"):
            return cand, real
    return None


def check_contents(img: Image, team: str) -> Contents:
    findings: list[Finding] = []
    add = lambda check, status, detail, **data: findings.append(  # noqa: E731
        Finding(check, status, detail, data))
    cfg = img.config
    ccfg = cfg.get("config") or {}
    fs = merge_layers(m.layer for m in img.layers)

    want = f"{team}:latest"
    if want in img.tags:
        add("tag", "pass", f"{want} is inside (tags: {', '.join(img.tags)})")
    elif not img.tags:
        add("tag", "fail", f"no tag inside: the image was saved by id, so the organisers' "
                           f"`docker run ... {team}` cannot find it; package with `make package`")
    else:
        add("tag", "fail", f"{want} is not inside (tags: {', '.join(img.tags)}): rebuild and "
                           f"package with TEAMNAME={team}")
    extra = [t for t in img.tags if t != want]
    if extra and want in img.tags:
        findings[-1].detail += f"; extra tags {extra}"

    add("teamname", "pass" if TEAMNAME_RE.match(team) else "fail",
        team if TEAMNAME_RE.match(team) else f"{team!r}: lowercase letters only")

    plat = f"{cfg.get('os', '?')}/{cfg.get('architecture', '?')}"
    add("platform", "pass" if plat == "linux/amd64" else "fail",
        plat if plat == "linux/amd64" else f"{plat}: the server runs linux/amd64 (build with "
                                           f"--platform linux/amd64)")

    ep = ccfg.get("Entrypoint") or []
    if not ep:
        add("entrypoint", "pass", "none: `python run_inference.py` runs as given")
    elif ep[0] in ENTRYPOINT_PASSTHROUGH or ep[-1] == "--":
        add("entrypoint", "warn", f"{ep}: passes the command through, but none is safer")
    else:
        add("entrypoint", "fail", f"ENTRYPOINT {ep} would receive `python run_inference.py` as "
                                  f"arguments instead of running it: remove the ENTRYPOINT")

    workdir = ccfg.get("WorkingDir") or "/"
    script = posixpath.join(workdir, "run_inference.py")
    kind = fs_kind(fs, script)
    if kind in ("file", "hardlink"):
        add("run_inference.py", "pass", f"{script} (WORKDIR {workdir})")
    else:
        add("run_inference.py", "fail", f"{script} is missing (WORKDIR {workdir}): "
                                        f"`python run_inference.py` would fail")

    env = _env(cfg)
    py = _which(fs, "python", env.get("PATH", ""))
    if py:
        add("python", "pass", f"{py[0]} -> {py[1]}")
    else:
        add("python", "fail", f"no `python` on PATH={env.get('PATH', '(unset)')} inside the image")

    model_dir = env.get("MODEL_DIR") or posixpath.join(workdir, "weights")
    prefix = model_dir.rstrip("/") + "/"
    in_model = {p: e for p, e in fs.items() if p.startswith(prefix)}
    ds = [p for p in in_model if posixpath.basename(p) == "dataset.json"]
    plans = [p for p in in_model if posixpath.basename(p) == "plans.json"]
    ckpts = [p for p, e in in_model.items() if re.search(r"/fold_[^/]+/checkpoint_\w+\.pth$", p)]
    scripted = [p for p, e in in_model.items() if p.endswith((".pt", ".ts")) and e.kind == "file"]
    dataset_json = None
    if ds:
        ds_entry = fs[min(ds, key=len)]
        try:
            dataset_json = json.loads(ds_entry.text or b"")
        except ValueError:
            dataset_json = None
    model_bytes = sum(e.size for e in in_model.values() if e.kind == "file")
    folds = sorted({p.split("/fold_")[1].split("/")[0] for p in ckpts})
    if ds and (plans and ckpts or scripted):
        what = (f"nnU-Net folder, folds {', '.join(folds)}" if ckpts else
                f"TorchScript {posixpath.basename(scripted[0])}")
        add("weights", "pass", f"{model_dir}: {what}, {model_bytes / 1e6:,.1f} MB",
            model_dir=model_dir)
    else:
        missing = [n for n, have in (("dataset.json", ds), ("plans.json", plans or scripted),
                                     ("fold_*/checkpoint_final.pth", ckpts or scripted)) if not have]
        add("weights", "fail", f"{model_dir}: missing {', '.join(missing)}: copy the trained "
                               f"model into weights/ and rebuild")

    # secrets: in any layer, even if a later layer deletes them (the bytes are still shipped)
    hits = []
    for i, m in enumerate(img.layers):
        for path, e in m.layer.items():
            if e.secrets:
                gone = " (deleted by a later layer, still shipped)" if path not in fs else ""
                hits.append(f"{path}: {', '.join(e.secrets)}{gone}")
    if hits:
        add("secrets", "fail", f"{len(hits)} file(s) with credentials: " + "; ".join(hits[:3]) +
            (" ..." if len(hits) > 3 else "") + " - remove them and rebuild (.dockerignore)",
            files=hits)
    else:
        add("secrets", "pass", "no private keys, cloud credentials or .env secrets "
                               "(checked by content)")

    paths = set()
    for m in img.layers:
        paths.update(m.layer)
    gits = sorted({"/".join(p.split("/")[: p.split("/").index(".git") + 1])
                   for p in paths if ".git" in p.split("/")})
    envs = sorted(p for p in paths if posixpath.basename(p) == ".env")
    if gits or envs:
        add(".git / .env", "fail", "found " + ", ".join((gits + envs)[:5]) +
            ": add them to .dockerignore and rebuild")
    else:
        add(".git / .env", "pass", "none")

    wheelhouse = sorted({"/".join(p.split("/")[: p.split("/").index("wheelhouse") + 1])
                         for p in paths if "wheelhouse" in p.split("/")})
    wheels = [p for p in paths if p.endswith(".whl") and not any(a in p for a in WHEEL_ALLOWED)]
    if wheelhouse or wheels:
        add("wheelhouse", "fail", f"{len(wheelhouse) + len(wheels)} wheelhouse path(s)/wheel "
                                  f"file(s), e.g. {(wheelhouse + wheels)[0]}: installed packages "
                                  f"suffice, do not ship the wheels")
    else:
        add("wheelhouse", "pass", "no wheelhouse or stray wheels")

    size = sum(m.size if m.compression == "" else 0 for m in img.layers) or \
        sum(e.size for e in fs.values())
    add("size", "warn" if size > BIG_IMAGE_BYTES else "pass",
        f"{size / 1e9:.2f} GB uncompressed in {len(img.layers)} layers", bytes=size)
    return Contents(findings, dataset_json, workdir, fs)
