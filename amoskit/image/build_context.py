"""Assemble the two build contexts (builder, runtime) as tar files holding only what each stage reads.

Why not the repository folder: the runtime stage must not upload a wheelhouse of several hundred MB
on every code change, and a wheelhouse or weights folder may live outside the repository. The
repository's `.dockerignore` still decides what may enter (secrets, caches, tests never do), and a
content scan refuses private keys that hide under an innocent name.
"""
from __future__ import annotations

import json
import mmap
import os
import posixpath
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from amosseg import model_choice, model_folder
from docker.utils.build import PatternMatcher

from amoskit import REPO
from amoskit.image import engine_choice, weights_stage
BUILDER_DOCKERFILE = "docker/Dockerfile.build"
RUNTIME_DOCKERFILE = "docker/Dockerfile.runtime"
NO_WHEELHOUSE = "docker/no-wheelhouse"
REQUIREMENTS = ("inference/requirements.txt", "inference/requirements-nodeps.txt",
                "inference/requirements-nnunet.txt", "inference/requirements-nnunet-nodeps.txt",
                "inference/requirements-timm.txt")
# What a private key or a credentials file looks like inside, whatever its name.
SECRET_MARKERS = (b"PRIVATE KEY-----", b"aws_secret_access_key", b"AWS_SECRET_ACCESS_KEY")


class ContextError(Exception):
    """A build input is missing or unsafe; the message is the one line shown to the user."""


@dataclass
class Context:
    """A build context tar on disk plus what the build needs to know about it."""
    tar_path: Path
    dockerfile: str
    buildargs: dict[str, str] = field(default_factory=dict)
    bytes_by_folder: dict[str, int] = field(default_factory=dict)
    weights: weights_stage.Staged | None = None   # the runtime stage: what of WEIGHTS was shipped

    def remove(self) -> None:
        self.tar_path.unlink(missing_ok=True)


def shown(path: Path) -> str:
    """A path as the user would type it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def check_weights(weights: Path, folds: str = "", checkpoint: str = "") -> model_choice.Choice:
    """Refuse WEIGHTS the engine could not run with this FOLDS / CHECKPOINT choice (empty: the engine's
    defaults), naming the first missing or empty file; return what will run. The rules are the
    engine's own (amosseg.model_choice), read torch-free."""
    try:
        src = weights_stage.open_source(weights)
    except weights_stage.WeightsError:
        raise ContextError(f"{shown(weights)}/ does not exist: {model_folder.HINT}") from None
    choice = weights_stage.choose(src, folds, checkpoint)
    if choice.ok:
        return choice
    one = choice.members[0] if len(choice.members) == 1 and not choice.members[0].previous_stage else None
    m = one.description if one else choice.torchscript
    if m is None and choice.kind == "unknown" and src.zip is None:  # nothing found: name the first file to add
        m = model_folder.describe_dir(weights, checkpoint or model_folder.CHECKPOINT)
    if m is None or m.problem or not (m.missing or m.empty):
        raise ContextError(f"{shown(weights)}: {choice.problem}")
    base = weights / one.folder if one and one.folder else weights
    hint = model_folder.TORCHSCRIPT_HINT if m.kind == "torchscript" else model_folder.HINT
    if m.missing:
        name = m.missing[0]
        if "*" in name:  # no fold at all: name the first one a user would add
            raise ContextError(f"{shown(base / m.path(name.replace('*', '0')))} is missing "
                               f"(no {name} in {shown(base / m.root)}/): {hint}")
        raise ContextError(f"{shown(base / m.path(name))} is missing: {hint}")
    raise ContextError(f"{shown(base / m.path(m.empty[0]))} is empty: {hint}")


def choose_engine(weights: Path, choice: model_choice.Choice, engine: str, trainer_code: str):
    """The engine the image runs and why (amoskit.image.engine_choice), from the plans of every
    configuration that runs and TRAINER_CODE; refused in one line as a ContextError."""
    members, networks = [], []
    if choice.kind == "nnunet":
        src = weights_stage.open_source(weights)
        for m in choice.all_members():
            parsed = model_choice.parse_config_dir(posixpath.basename(m.folder) or weights.name)
            trainer = parsed[0] if parsed else ""
            try:
                rel = posixpath.join(m.folder, "plans.json") if m.folder else "plans.json"
                plans = json.loads((Path(choice.root) / rel).read_text()) if choice.root else src.read_json(rel)
                conf = model_choice.resolved_configuration(plans, m.configuration or "")
                network = (conf.get("architecture") or {}).get("network_class_name")
                problem = model_choice.fast_engine_problem(conf)
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                network, problem = None, None
            members.append((trainer, network, problem))
            shown_net = network.rsplit(".", 1)[-1] if network else "from the checkpoint's plans (pre-2.4 plans)"
            if engine_choice.NNUNET_OWN_NETWORK_TRAINERS.match(trainer):
                shown_net = f"its own network (the plans name {shown_net})"
            networks.append(f"{m.configuration or m.folder}: {trainer + ', ' if trainer else ''}{shown_net}")
    try:
        chosen = engine_choice.choose(engine, members, trainer_code)
    except engine_choice.EngineChoiceError as exc:
        raise ContextError(str(exc)) from None
    chosen.networks = networks
    if chosen.engine == "nnunet" and choice.kind == "torchscript":
        raise ContextError("ENGINE=nnunet runs nnU-Net folders; a TorchScript model runs on the fast engine "
                           "(leave ENGINE empty)")
    return chosen


def staged_weights(workdir: Path, weights: Path, folds: str, checkpoint: str,
                   matcher: PatternMatcher) -> tuple[list[tuple[Path, str]], weights_stage.Staged]:
    """(host path, name in context) of what inference reads from WEIGHTS (weights_stage), zip members
    extracted and the choice file written under workdir."""
    check_weights(weights, folds, checkpoint)
    src = weights_stage.open_source(weights)
    st = weights_stage.stage(src, weights_stage.choose(src, folds, checkpoint))
    if st.choice.kind == "torchscript":
        return selected_files(weights, "weights", matcher), st
    files = []
    for source, arcname in st.files:
        if isinstance(source, bytes):
            path = workdir / posixpath.basename(arcname)
            path.write_bytes(source)
        else:
            path = src.materialise(source, workdir)
        files.append((path, arcname))
    return files, st


def ignore_matcher(repo: Path = REPO) -> PatternMatcher:
    """The repository's .dockerignore rules (the same ones a plain `docker build .` applies)."""
    lines = (repo / ".dockerignore").read_text().splitlines()
    patterns = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return PatternMatcher(patterns)


def selected_files(source: Path, arcdir: str, matcher: PatternMatcher) -> list[tuple[Path, str]]:
    """(host path, name in context) of every file under source that .dockerignore lets in.

    Symlinks are followed so a model folder of links still ships the real checkpoints."""
    picked = []
    for dirpath, dirnames, filenames in weights_stage.walk(source):
        rel_dir = Path(dirpath).relative_to(source)
        dirnames[:] = sorted(d for d in dirnames
                             if not matcher.matches(str(Path(arcdir) / rel_dir / d / "x")))
        for name in sorted(filenames):
            arcname = str(Path(arcdir) / rel_dir / name)
            if not matcher.matches(arcname):
                picked.append((Path(dirpath) / name, arcname))
    return picked


def find_secret(path: Path) -> bytes | None:
    """The secret marker a file contains, if any (memory-mapped: checkpoints are large)."""
    if path.stat().st_size == 0:
        return None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for marker in SECRET_MARKERS:
            if mm.find(marker) != -1:
                return marker
    return None


def refuse_secrets(files: list[tuple[Path, str]]) -> None:
    for host_path, arcname in files:
        marker = find_secret(host_path)
        if marker is not None:
            raise ContextError(f"{shown(host_path)} looks like a secret (contains "
                               f"{marker.decode()!r}); it would ship inside the image: remove it "
                               f"or list it in .dockerignore")


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Root-owned, world-readable entries: the image then works for root and any other uid."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if info.isdir() or info.mode & 0o100:
        info.mode = 0o755
    else:
        info.mode = 0o644
    return info


def write_tar(files: list[tuple[Path, str]], workdir: Path, stem: str) -> Path:
    """Write the files into an uncompressed tar under workdir; return its path."""
    fd, name = tempfile.mkstemp(prefix=f"{stem}-", suffix=".tar", dir=workdir)
    with os.fdopen(fd, "wb") as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for host_path, arcname in files:
            info = tar.gettarinfo(str(host_path.resolve()), arcname=arcname)
            with open(host_path, "rb") as src:
                tar.addfile(_normalised(info), src)
    return Path(name)


def builder_context(workdir: Path, wheelhouse: Path | None, repo: Path = REPO) -> Context:
    """Context of the builder stage: its Dockerfile, the requirement files, the wheels if any."""
    files = [(repo / BUILDER_DOCKERFILE, BUILDER_DOCKERFILE)]
    files += [(repo / r, r) for r in REQUIREMENTS]
    files.append((repo / NO_WHEELHOUSE / "README.md", f"{NO_WHEELHOUSE}/README.md"))
    arg = NO_WHEELHOUSE
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise ContextError(f"WHEELHOUSE={wheelhouse} is not a folder: make it with "
                               f"make wheelhouse, or leave WHEELHOUSE empty to install online")
        wheels = sorted(wheelhouse.glob("*.whl"))
        if not wheels:
            raise ContextError(f"WHEELHOUSE={wheelhouse} holds no .whl files: make it with "
                               f"make wheelhouse, or leave WHEELHOUSE empty to install online")
        files += [(w, f"wheelhouse/{w.name}") for w in wheels]
        arg = "wheelhouse"
    for host_path, _ in files:
        if not host_path.is_file():
            raise ContextError(f"{shown(host_path)} is missing")
    return Context(write_tar(files, workdir, "builder"), BUILDER_DOCKERFILE, {"WHEELHOUSE": arg})


def runtime_context(workdir: Path, weights: Path, inference: Path, repo: Path = REPO,
                    folds: str = "", checkpoint: str = "", engine: str = "fast",
                    trainer_files: list[Path] | None = None, own_trainers: list[str] | None = None) -> Context:
    """Context of the runtime stage: its Dockerfile, weights/ and inference/ after .dockerignore,
    trainers/ (TRAINER_CODE's modules, or only a README); the model choice (FOLDS, CHECKPOINT) and
    ENGINE go in as build arguments, baked into the image's ENV; NNUNET_OWN_TRAINERS names nnU-Net's own
    trainers whose module the image moves where nnU-Net's lookup finds it."""
    if not (inference / "run_inference.py").is_file():
        raise ContextError(f"{shown(inference / 'run_inference.py')} is missing: the organisers "
                           f"run `python run_inference.py` in /workspace")
    matcher = ignore_matcher(repo)
    weight_files, staged = staged_weights(workdir, weights, folds, checkpoint, matcher)
    code_files = selected_files(inference, "inference", matcher)
    trainer_code = [(p, f"trainers/{p.name}") for p in trainer_files or []]
    readme = workdir / "trainers-README.md"
    readme.write_text("TRAINER_CODE's modules, copied beside nnU-Net's own trainers when ENGINE=nnunet.\n")
    trainer_code.append((readme, "trainers/README.md"))
    refuse_secrets(weight_files + code_files + trainer_code)
    files = [(repo / RUNTIME_DOCKERFILE, RUNTIME_DOCKERFILE)] + weight_files + code_files + trainer_code
    sizes = {"weights": sum(p.stat().st_size for p, _ in weight_files),
             "inference": sum(p.stat().st_size for p, _ in code_files)}
    return Context(write_tar(files, workdir, "runtime"), RUNTIME_DOCKERFILE,
                   {"FOLDS": folds, "CHECKPOINT": checkpoint, "ENGINE": engine,
                    "TRAINERS": "trainers", "NNUNET_OWN_TRAINERS": " ".join(own_trainers or [])}, sizes, staged)
