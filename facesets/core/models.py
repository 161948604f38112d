"""Model packs: resolve a pack name or folder to a folder, say what each .onnx in it is, check it is usable.

A pack is a folder of .onnx files (insightface's layout): a face detector and a recognizer are required;
landmark (2d_106, 3d_68) and gender-age models are used when present. `model.pack` is either a folder
path or the name of a pack installed under `<model.root>/models/<name>` (insightface's place for
buffalo_l and the others). Nothing here touches the network except `fetch`, which the `facesets models
--check` step calls once for a named pack that is not installed yet: a stage that loads the model never
downloads, so an offline machine gets one line saying what to do, not a connection error per job.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from facesets.core import messages
from facesets.core.digests import sha256_file
from facesets.core.errors import ModelPackError

log = logging.getLogger(__name__)
REQUIRED = ("detection", "recognition")
WHAT = {"detection": "face detector (an SCRFD / RetinaFace .onnx)",
        "recognition": "face recognizer (an ArcFace-style .onnx, 112x112 input)"}
DOWNLOAD_TIMEOUT_S = 60


@dataclass
class ModelFile:
    path: Path
    size: int
    task: str | None = None      # detection, recognition, landmark_2d_106, landmark_3d_68, genderage, ...
    width: int | None = None     # a recognizer's embedding width
    problem: str | None = None   # why this file is not used (unreadable, unknown kind, a second model of a task)

    @property
    def label(self) -> str:
        if self.task == "recognition":
            return f"recognition ({self.width}-d embedding)" if self.width else "recognition (width unknown)"
        return self.task or "-"


@dataclass
class Pack:
    spec: str                    # as configured: a name or a path
    folder: Path
    files: list[ModelFile] = field(default_factory=list)

    @property
    def tasks(self) -> dict[str, ModelFile]:
        """The model insightface uses for each task: the first file of that task by file name."""
        return {f.task: f for f in self.files if f.task and not f.problem}

    @property
    def embedding_width(self) -> int | None:
        rec = self.tasks.get("recognition")
        return rec.width if rec else None

    def missing(self, need: tuple[str, ...] = REQUIRED) -> list[str]:
        return [t for t in need if t not in self.tasks]

    def require(self, need: tuple[str, ...] = REQUIRED) -> "Pack":
        missing = self.missing(need)
        if missing:
            has = ", ".join(f"{f.path.name} ({f.label})" for f in self.files if f.task and not f.problem) or "no model"
            raise ModelPackError(messages.PACK_INCOMPLETE.format(
                folder=self.folder, missing=" and no ".join(WHAT.get(t, t) for t in missing), has=has))
        return self


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or bool(os.altsep and os.altsep in spec) or spec.startswith((".", "~"))


def installed_folder(name: str, root: str) -> Path:
    """Where insightface keeps (and downloads) the pack called `name`."""
    return Path(os.path.expanduser(root)) / "models" / name


def locate(spec: str, root: str = "~/.insightface") -> Path:
    """The pack's folder: `spec` as a folder path, else `<root>/models/<spec>`. Never downloads."""
    p = Path(os.path.expanduser(spec))
    if p.is_dir():
        folder = p.resolve()
    elif p.exists():
        raise ModelPackError(messages.PACK_NOT_A_FOLDER.format(path=spec))
    elif _looks_like_path(spec):
        raise ModelPackError(messages.PACK_FOLDER_MISSING.format(path=spec))
    elif not spec or spec in (".", "..") or spec.strip() != spec:
        raise ModelPackError(messages.PACK_NAME_INVALID.format(name=spec))
    else:
        folder = Path(os.path.abspath(installed_folder(spec, root)))
        if not folder.is_dir():
            raise ModelPackError(messages.PACK_NOT_INSTALLED.format(name=spec, folder=installed_folder(spec, root)))
    if not os.access(folder, os.R_OK | os.X_OK):
        raise ModelPackError(messages.PACK_UNREADABLE.format(path=folder, reason="permission denied"))
    return folder


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def _route(inputs: list[list], outputs: list[list]) -> tuple[str | None, int | None]:
    """insightface's routing of an .onnx by its shapes (model_zoo.ModelRouter), without starting a session."""
    shape = inputs[0] if inputs else []
    hw = shape[2:4] if len(shape) >= 4 else [None, None]
    out = outputs[0] if outputs else []
    if len(outputs) >= 5:
        return "detection", None
    if hw == [192, 192]:
        return ("landmark_3d_68" if out[1:2] == [3309] else
                f"landmark_2d_{(out[1] or 0) // 2}" if len(out) > 1 else "landmark"), None
    if hw == [96, 96]:
        return ("genderage" if out[1:2] == [3] else f"attribute_{out[1] if len(out) > 1 else '?'}"), None
    if len(inputs) == 2 and hw == [128, 128]:
        return "inswapper", None
    if hw[0] and hw[0] == hw[1] and hw[0] >= 112 and hw[0] % 16 == 0:
        return "recognition", out[-1] if out else None
    return None, None


@lru_cache(maxsize=64)
def _classify(path: str, size: int, mtime_ns: int) -> tuple[str | None, int | None, str | None]:
    try:
        import onnx

        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError, OSError ... for a file that is not a model
        return None, None, f"not a readable ONNX model ({type(exc).__name__})"
    inits = {i.name for i in model.graph.initializer}
    inputs = [_dims(v) for v in model.graph.input if v.name not in inits]
    task, width = _route(inputs, [_dims(v) for v in model.graph.output])
    return task, width, None if task else "not a face model insightface uses (unknown input/output shapes)"


def inspect(folder: Path, spec: str | None = None) -> Pack:
    """Every .onnx of the folder with its task, in insightface's order (sorted by name; the first of a task wins)."""
    pack = Pack(spec or str(folder), Path(folder))
    try:
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix == ".onnx" and p.is_file())
    except OSError as exc:
        raise ModelPackError(messages.PACK_UNREADABLE.format(path=folder, reason=exc.strerror or exc)) from None
    seen: dict[str, str] = {}
    for p in paths:
        st = p.stat()
        task, width, problem = _classify(str(p), st.st_size, st.st_mtime_ns)
        if task and not problem and task in seen:
            problem = f"not used: {seen[task]} is this pack's {task} model"
        elif task and not problem:
            seen[task] = p.name
        pack.files.append(ModelFile(p, st.st_size, task, width, problem))
    return pack


def check(spec: str, root: str = "~/.insightface", need: tuple[str, ...] = REQUIRED) -> Pack:
    """The pack, located and inspected; ModelPackError (one line, with the fix) when it cannot be used."""
    return inspect(locate(spec, root), spec).require(need)


def fetch(name: str, root: str = "~/.insightface", timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Download the named pack into `<root>/models/<name>` with insightface's downloader (one attempt)."""
    folder = installed_folder(name, root)
    if folder.is_dir():
        return folder
    import requests
    from insightface.utils import storage

    log.info("downloading model pack %s into %s", name, folder)
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # requests has no timeout of its own here: a dead network must not hang
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # insightface prints the paths logged above
            storage.download("models", name, root=os.path.expanduser(root))
    except Exception as exc:  # no network, HTTP errors, a bad zip: all mean "not downloadable here"
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, socket.timeout)):
            reason = "no network connection"
        else:
            text = " ".join(str(exc).split())
            reason = f"{type(exc).__name__}: {text[:120]}" if text else type(exc).__name__
        raise ModelPackError(messages.PACK_DOWNLOAD_FAILED.format(name=name, folder=folder, reason=reason)) from exc
    finally:
        socket.setdefaulttimeout(old)
    return folder


def ensure(spec: str, root: str = "~/.insightface", download: bool = True) -> Pack:
    """`check`, first downloading a named pack that is not installed when `download` (the pipeline's model step)."""
    try:
        return check(spec, root)
    except ModelPackError:
        p = Path(os.path.expanduser(spec))
        if not download or p.exists() or _looks_like_path(spec) or installed_folder(spec, root).exists():
            raise
    fetch(spec, root)
    return check(spec, root)


def describe(pack: Pack) -> dict:
    """What the pipeline records about the pack it runs with (results/cache/model.json): a change of any
    model file changes this record."""
    return {"pack": pack.spec, "folder": str(pack.folder), "embedding_width": pack.embedding_width,
            "tasks": sorted(pack.tasks),
            "models": [{"file": f.path.name, "task": f.task, "embedding_width": f.width, "size": f.size,
                        "sha256": sha256_file(f.path), "used": not f.problem} for f in pack.files]}


def listing(pack: Pack) -> list[str]:
    """A human-readable table of the pack: one line per model file with its task and OK / the problem."""
    lines = []
    for f in pack.files:
        size = f"{f.size / 1e6:.1f} MB" if f.size >= 100_000 else f"{f.size / 1e3:.0f} kB"
        lines.append(f"  {f.path.name:<28} {f.label:<30} {size:>9}  {f.problem or 'OK'}")
    return lines or ["  (no .onnx files)"]
