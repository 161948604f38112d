"""Every model-running stage through the profile's worker interpreter (scripts/face_worker.py): embed, enrich,
the crop checks and verify-fsz, from a second venv that has no facesets package, through a path map; the same
results as in process; a killed worker resumes; an interpreter or provider that cannot start is one line; the
worker's face code imports nothing outside numpy / opencv / Pillow / onnxruntime / insightface."""
from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import FACES, REPO, SHARED, copy_photos, needs_shared
from pipeline_util import snakemake, write_config

pytestmark = [needs_shared]

SHAPES_PACK = SHARED / "models" / "facepack-buffalo-shapes"  # has landmark models: enrich runs them
SCRIPT = REPO / "scripts" / "face_worker.py"
PHOTO = "deepface/p01/img1.jpg"

# The worker-safe modules (what the worker imports from the source tree) and the facesets modules they may import.
WORKER_SAFE = ["facesets.core.analysis", "facesets.core.workitems", "facesets.core.engine", "facesets.core.recorded",
               "facesets.core.imageio", "facesets.export.crops", "facesets.export.consistency"]
SAFE_CLOSURE = WORKER_SAFE + ["facesets", "facesets.core", "facesets.export", "facesets.core.models",
                              "facesets.core.messages", "facesets.core.digests", "facesets.core.errors"]
ALLOWED = ["numpy", "cv2", "PIL", "onnxruntime", "insightface", "pillow_heif", "worker_io", "facesets"]
REFUSED = ["yaml", "jsonschema", "snakemake", "faiss", "sklearn", "scipy", "tqdm"]

# Installed first in a fresh interpreter: any import that code of this repository (facesets/, scripts/) asks for
# must be the standard library, an allowed package or a worker-safe facesets module. The packages' own imports
# (insightface needs scipy and tqdm itself) are theirs to make.
GUARD = f"""
import sys
_ROOTS = ({str(REPO / 'facesets')!r}, {str(REPO / 'scripts')!r})
_ALLOWED, _REFUSED, _SAFE = set({ALLOWED!r}), set({REFUSED!r}), set({SAFE_CLOSURE!r})

def _importer():
    f = sys._getframe(2)
    while f is not None and ("importlib" in f.f_code.co_filename or f.f_code.co_filename.startswith("<frozen")):
        f = f.f_back
    return f.f_code.co_filename if f is not None else ""

class _Guard:
    def find_spec(self, name, path=None, target=None):
        who = _importer()
        if not who.startswith(_ROOTS):
            return None
        top = name.partition(".")[0]
        if top in _REFUSED or (top not in sys.stdlib_module_names and top not in _ALLOWED):
            raise ImportError(f"worker guard: {{who}} imports {{name}}, which the worker's venv does not have")
        if top == "facesets" and name not in _SAFE:
            raise ImportError(f"worker guard: {{who}} imports {{name}}, which is not worker-safe")
        return None

sys.meta_path.insert(0, _Guard())
"""


def _guarded(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", GUARD + code], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("module", WORKER_SAFE)
def test_worker_safe_module_imports_only_the_allowed_packages(module, tmp_path):
    out = _guarded(f"import {module}", tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]


def test_the_guard_refuses_what_it_should(tmp_path):
    out = _guarded("import facesets.embed.embedder", tmp_path)  # tqdm, the store: pipeline-only
    assert out.returncode != 0 and "worker guard" in out.stderr
    for name in REFUSED:
        code = f"exec(compile('import {name}', {str(REPO / 'facesets' / 'core' / 'x.py')!r}, 'exec'))"
        out = _guarded(code, tmp_path)
        assert out.returncode != 0 and f"imports {name}" in out.stderr, name


def test_worker_check_runs_under_the_guard(tmp_path):
    """The worker script itself, its lazy imports included (engine, insightface, onnxruntime), one real photo."""
    code = ("import runpy; sys.path.insert(0, %r); sys.argv = [%r, '--check', %r, '--pack', %r]; "
            "runpy.run_path(%r, run_name='__main__')" % (str(SCRIPT.parent), str(SCRIPT), str(FACES / PHOTO),
                                                          str(SHAPES_PACK), str(SCRIPT)))
    out = _guarded(code, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "providers CPUExecutionProvider" in out.stderr and "1 faces" in out.stderr, out.stderr[-2000:]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> Path:
    """A second venv WITHOUT facesets: the main venv's site-packages is added by a .pth file, whose own .pth
    files (facesets' editable-install finder) are not processed there."""
    env = tmp_path_factory.mktemp("worker_venv") / "venv"
    venv.EnvBuilder(with_pip=False).create(env)
    sp = next((env / "lib").glob("python3*/site-packages"))
    (sp / "main_venv.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    py = env / "bin" / "python"
    out = subprocess.run([py, "-c", "import numpy, cv2, onnxruntime, insightface\nimport facesets"],
                         capture_output=True, text=True, cwd=env)
    assert out.returncode != 0 and "No module named 'facesets'" in out.stderr, out.stderr[-2000:]
    return py


def _facesets(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facesets", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_worker_check_prints_interpreter_and_provider(bare_python, tmp_path):
    out = _facesets("worker-check", str(FACES / PHOTO), "--python", str(bare_python), "--model-pack",
                    str(SHAPES_PACK), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"python {bare_python}" in out.stdout and "providers CPUExecutionProvider" in out.stdout
    assert "1 faces" in out.stdout


def test_a_worker_that_cannot_start_fails_with_one_line(bare_python, tmp_path):
    nowhere = tmp_path / "no" / "python"
    no_numpy = tmp_path / "empty_venv"
    venv.EnvBuilder(with_pip=False).create(no_numpy)
    cases = [(["--python", str(nowhere)], [str(nowhere), "cannot be run"]),
             (["--python", str(no_numpy / "bin" / "python")], [str(no_numpy / "bin" / "python"), "numpy"]),
             (["--python", str(bare_python), "--providers", "DmlExecutionProvider,CPUExecutionProvider"],
              [str(bare_python), "DmlExecutionProvider is not available"])]
    for flags, words in cases:
        out = _facesets("worker-check", str(FACES / PHOTO), "--model-pack", str(SHAPES_PACK), *flags, cwd=tmp_path)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1, (flags, out.stderr[-2000:])
        assert lines[0].startswith("facesets: ") and all(w in lines[0] for w in words), (flags, lines)


# ------------------------------------------------------------------------------------------ the whole pipeline

PHOTOS = ["deepface/p01/img1.jpg", "deepface/p01/img2.jpg", "deepface/p01/img4.jpg", "deepface/p01/img5.jpg",
          "deepface/p03/img8.jpg", "deepface/p03/img9.jpg", "deepface/p03/img47.jpg", "deepface/p04/img3.jpg",
          "deepface/p04/img12.jpg", "deepface/p04/img54.jpg", "deepface/p05/img16.jpg", "deepface/p05/img17.jpg",
          "deepface/p05/img59.jpg", "deepface/_group/couple.jpg"]
KILL_AFTER, FLUSH = 7, 4
MODEL_STAGES = ("embed_shard", "enrich", "export_crops")
# every verdict they need was stored by export_crops' worker; verify_export has the worker embed the crops
# (bundle consistency) from their stored keypoints, verify_fsz finds those embeddings stored too
STORE_READERS = ("verify_export", "verify_fsz")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, bare_python):
    """The default target in process (the reference, moved to results_ref), then through a profile that names
    the bare venv and a path map under which the photos, the pack and the results live at another path (a
    symlink): first with the embed worker killed part way, then resumed."""
    base = tmp_path_factory.mktemp("worker_pipe").resolve()
    real, mapped = base / "real", base / "mnt"
    (real / "photos").mkdir(parents=True)
    mapped.symlink_to(real, target_is_directory=True)
    copy_photos(real / "photos", PHOTOS)
    shutil.copy2(real / "photos" / PHOTOS[0], real / "photos" / "copy_of_img1.jpg")  # known content: read once
    (real / "photos" / "empty.jpg").write_bytes(b"")
    (real / "photos" / "not_a_photo.jpg").write_bytes(b"plain text, not an image")
    shutil.copytree(SHAPES_PACK, real / "pack")
    wd = real / "run"
    wd.mkdir()
    cfg = write_config(wd, {"photos": real / "photos"}, model={"pack": str(real / "pack")},
                       embed={"shards": 1, "flush_every": FLUSH}, refine={"min_faces": 2},
                       curation={"occlusion": {"enabled": "off"}})  # auto runs the clip job with another interpreter
    snakemake(wd, cfg)
    (wd / "results").rename(wd / "results_ref")

    workers = wd / "workers.yaml"
    workers.write_text(yaml.safe_dump({"workers": {"python": str(bare_python),
                                                   "path_map": [[f"{real}/", f"{mapped}/"]]}}))
    profile = wd / "profile"
    profile.mkdir()
    (profile / "config.yaml").write_text(yaml.safe_dump({"config": [f"workers_file={workers}"]}))
    os.environ["FACESETS_WORKER_FAULT"] = f"kill:{KILL_AFTER}"
    try:
        killed = snakemake(wd, cfg, "--profile", str(profile), check=False)
    finally:
        del os.environ["FACESETS_WORKER_FAULT"]
    partial = wd / "results/cache/store/photos/shard_000/.workers/embed/results.json.partial"
    saved = partial.read_text().count("\n") - 1 if partial.is_file() else -1
    snakemake(wd, cfg, "--profile", str(profile))
    return {"wd": wd, "ref": wd / "results_ref", "res": wd / "results", "killed": killed, "saved": saved,
            "mapped": mapped, "python": bare_python}


def _log(res: Path, rule: str) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((res / "logs" / rule).glob("*.log")))


@pytest.mark.slow
def test_model_stages_ran_in_the_worker_interpreter(runs):
    for rule in MODEL_STAGES:
        text = _log(runs["res"], rule)
        assert f"face_worker: ready: python {runs['python']}" in text, (rule, text[-2000:])
        assert "providers CPUExecutionProvider" in text and f"pack {runs['mapped']}/pack" in text, rule
    assert not list(runs["res"].rglob(".workers")), "work folders are removed once their results are taken"


@pytest.mark.slow
def test_the_worker_fills_the_detection_store(runs):
    """export_crops' worker hands back every detection it ran and they are stored: the verifies and the
    multi-face audit after it start no worker and run no detector, and the store holds exactly what the
    in-process run stored, value for value."""
    import sqlite3

    res = runs["res"]
    assert "face_worker" not in _log(res, "verify_fsz")
    for name in ("export/verify.json", "curation/verify.json"):
        assert json.loads((res / name).read_text())["detections"]["detector_runs"] == 0, name
    multiface = json.loads((res / "curation/multiface_results.json").read_text())
    assert multiface["python"] is None and multiface["detections"]["detector_runs"] == 0

    def rows(root: Path, table: str) -> dict:
        with sqlite3.connect(root / "cache/detections.sqlite") as conn:
            return {k: json.loads(v) for k, v in conn.execute(f"SELECT key, value FROM {table}")}

    ref = rows(runs["ref"], "detections")
    assert ref and rows(res, "detections") == ref
    ref_emb, res_emb = rows(runs["ref"], "embeddings"), rows(res, "embeddings")
    assert ref_emb and ref_emb.keys() == res_emb.keys()  # the bundle consistency check's, one per crop
    assert all(np.allclose(ref_emb[k], res_emb[k], atol=1e-4) for k in ref_emb)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_partial_results(runs):
    assert runs["killed"].returncode != 0
    assert runs["saved"] == KILL_AFTER // FLUSH * FLUSH  # flushed every FLUSH items, the rest lost with the kill
    died = runs["killed"].stdout + runs["killed"].stderr
    assert f"facesets: the embed worker in {runs['python']} stopped after {runs['saved']} of " in died, died[-3000:]
    assert "killed by signal 9" in died and "run again to resume" in died
    assert f"face_worker: resumed {runs['saved']} of " in _log(runs["res"], "embed_shard")


def _arrays(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


VOLATILE = {"created", "time", "started", "finished", "seconds"}


def _json(path: Path):
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in VOLATILE}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(json.loads(path.read_text()))


# By design not byte-equal between two runs: the bundle ledger keys each bundle to its members' size and mtime
# (the crops are the same bytes, written at another time). The verifies and the multi-face audit record how many
# detections they ran and read: the verdicts themselves must be equal.
_no_store_counts = lambda d: {k: v for k, v in d.items() if k != "detections"}  # noqa: E731
RUN_SPECIFIC = {"export/.bundles_ledger.json": lambda d: sorted(d),
                "export/verify.json": _no_store_counts, "curation/verify.json": _no_store_counts,
                "curation/multiface_results.json": lambda d: d["results"]}


def _compared(root: Path) -> list[str]:
    skip = ("logs/", "benchmarks/", "cache/shards/", "cache/store/", "cache/detections.sqlite", "report/",
            ".facesets-run.lock")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.is_file() and not p.is_symlink() and not str(p.relative_to(root)).startswith(skip))


@pytest.mark.slow
def test_worker_run_equals_the_in_process_run(runs):
    from facesets.embed.store import FaceStore

    ref, res = runs["ref"], runs["res"]
    assert _compared(ref) == _compared(res)
    differ = []
    for rel in _compared(ref):
        a, b = ref / rel, res / rel
        if a.read_bytes() == b.read_bytes():
            continue
        if rel.endswith(".npz"):
            x, y = _arrays(a), _arrays(b)
            same = x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)
        elif rel in RUN_SPECIFIC:
            same = RUN_SPECIFIC[rel](_json(a)) == RUN_SPECIFIC[rel](_json(b))
        elif rel.endswith(".json"):
            same = _json(a) == _json(b)
        elif rel.endswith(".fsz"):
            with zipfile.ZipFile(a) as za, zipfile.ZipFile(b) as zb:
                same = [(i.filename, za.read(i)) for i in za.infolist()] == [(i.filename, zb.read(i)) for i in zb.infolist()]
        else:
            same = False
        if not same:
            differ.append(rel)
    assert not differ, differ
    pngs = [r for r in _compared(ref) if r.endswith(".png")]
    assert pngs and all((ref / r).read_bytes() == (res / r).read_bytes() for r in pngs)  # crops byte for byte
    store = "cache/store/photos/shard_000"
    a, b = FaceStore(ref / store).load(), FaceStore(res / store).load()
    assert a.files == b.files
    assert all(np.array_equal(a.faces[k], b.faces[k]) for k in a.faces)  # embeddings equal, bit for bit
    statuses = {e["path"]: e["status"] for e in a.files.values()}
    assert statuses["empty.jpg"] == statuses["not_a_photo.jpg"] == "skipped"  # one bad file, recorded; run went on
