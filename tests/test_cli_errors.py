"""The CLI's errors: each case a user can fix prints exactly one line on stderr (`facesets: <what failed>:
<what to do>`), the traceback only with -v and always in the --log file; `facesets models` lists and
checks packs; every subcommand's --help is complete."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED

PACKS = SHARED / "models"
SC128 = PACKS / "facepack-sc128"
BUFFALO_SHAPES = PACKS / "facepack-buffalo-shapes"
needs_packs = pytest.mark.skipif(not (SC128.is_dir() and BUFFALO_SHAPES.is_dir()),
                                 reason=f"model packs not found under {PACKS} (set FACESETS_SHARED)")

# runs `python -m facesets` with every network attempt recorded on stderr (and refused)
NO_NETWORK = (
    "import runpy, sys\n"
    "def hook(event, args):\n"
    "    if event in ('socket.connect', 'socket.getaddrinfo'):\n"
    "        sys.stderr.write('NETWORK ATTEMPT ' + event + '\\n')\n"
    "        raise OSError('network blocked by the test')\n"
    "sys.addaudithook(hook)\n"
    "sys.argv = ['facesets'] + sys.argv[1:]\n"
    "runpy.run_module('facesets', run_name='__main__')\n"
)


def facesets(*args, cwd=None, env=None, no_network=False) -> subprocess.CompletedProcess:
    head = [sys.executable, "-c", NO_NETWORK] if no_network else [sys.executable, "-m", "facesets"]
    run_env = dict(os.environ, **(env or {}))
    run_env.pop("FACESETS_RUNTIME", None)
    return subprocess.run(head + [str(a) for a in args], capture_output=True, text=True, timeout=180, cwd=cwd,
                          env=run_env)


def one_line(out: subprocess.CompletedProcess, *words: str) -> str:
    """The error is the only stderr line, starts with `facesets:` and says each of `words`."""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("facesets: "), lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


@pytest.fixture
def photos(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    return d


def half_pack(tmp_path: Path, keep: str) -> Path:
    d = tmp_path / f"only_{keep}"
    d.mkdir()
    shutil.copy(SC128 / keep, d / keep)
    return d


# ---------------------------------------------------------------- model packs
def test_pack_folder_missing(tmp_path, photos):
    out = facesets("embed", photos, tmp_path / "cache", "--model-pack", tmp_path / "no_such_pack", "--quiet")
    one_line(out, "model pack folder", "no_such_pack", "not found", "point model.pack")
    assert out.returncode == 1
    assert not (tmp_path / "cache").exists()  # refused before any work


@needs_packs
@pytest.mark.parametrize("keep, missing", [("det_500m.onnx", "no face recognizer"),
                                           ("mobilefacenet_128d.onnx", "no face detector")])
def test_pack_folder_incomplete(tmp_path, photos, keep, missing):
    pack = half_pack(tmp_path, keep)
    out = facesets("embed", photos, tmp_path / "cache", "--model-pack", pack, "--quiet")
    one_line(out, str(pack), missing, keep, "add the missing .onnx")
    assert out.returncode == 1 and not (tmp_path / "cache").exists()


@needs_packs
def test_incomplete_pack_in_the_engine_says_which_model(tmp_path):
    from facesets.core.engine import FaceEngine
    from facesets.core.errors import ModelPackError

    with pytest.raises(ModelPackError, match="no face recognizer"):
        FaceEngine(str(half_pack(tmp_path, "det_500m.onnx")))


def test_named_pack_offline_never_touches_the_network(tmp_path, photos):
    root = tmp_path / "insightface"
    out = facesets("embed", photos, tmp_path / "cache", "--quiet", "--settings",
                   json.dumps({"model": {"pack": "buffalo_l", "root": str(root)}}), no_network=True)
    assert "NETWORK ATTEMPT" not in out.stderr
    one_line(out, "'buffalo_l' is not installed", "point model.pack at a pack folder",
             f"download it on a connected machine into {root / 'models' / 'buffalo_l'}")
    assert out.returncode == 1 and not root.exists()


def test_named_pack_flag_offline(tmp_path, photos):
    out = facesets("verify-fsz", photos, "--model-pack", "buffalo_l", "--model-root", tmp_path / "r", no_network=True)
    assert "NETWORK ATTEMPT" not in out.stderr
    one_line(out, "'buffalo_l' is not installed")


def test_models_check_offline_is_one_line(tmp_path):
    out = facesets("models", "--check", "buffalo_l", "--offline", "--model-root", tmp_path / "r",
                   "--out", tmp_path / "model.json", no_network=True)
    assert "NETWORK ATTEMPT" not in out.stderr
    one_line(out, "'buffalo_l' is not installed")
    assert out.returncode == 1 and not (tmp_path / "model.json").exists()


def test_models_check_download_failure_is_one_error_line(tmp_path):
    """The pipeline's model step downloads a named pack once; without a network that is one clear error."""
    dead_proxy = {"HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "NO_PROXY": "",
                  "no_proxy": ""}
    out = facesets("models", "--check", "buffalo_l", "--model-root", tmp_path / "r", "--out", tmp_path / "m.json",
                   env=dead_proxy)
    errors = [line for line in out.stderr.splitlines() if line.startswith("facesets")]
    assert len(errors) == 1 and out.stderr.splitlines()[-1] == errors[0], out.stderr
    assert "could not download model pack 'buffalo_l'" in errors[0] and "on a connected machine" in errors[0]
    assert "Traceback" not in out.stderr and len(out.stderr.splitlines()) <= 2  # at most the "downloading" line
    assert out.returncode == 1 and not (tmp_path / "m.json").exists()


# ---------------------------------------------------------------- inputs
def test_source_root_missing(tmp_path):
    out = facesets("embed", tmp_path / "nowhere", tmp_path / "cache", "--model-pack", tmp_path)
    one_line(out, "source folder", "nowhere", "not found", "sources[].path")
    assert out.returncode == 2 and not (tmp_path / "cache").exists()


def test_source_root_is_a_file(tmp_path):
    f = tmp_path / "photo.jpg"
    f.write_bytes(b"x")
    out = facesets("embed-shard", "--source", "s", "--root", f, "--shard", 0, "--shards", 1,
                   "--store", tmp_path / "store", "--summary", tmp_path / "s.json")
    one_line(out, "is not a folder", "sources[].path")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder: an unreadable source cannot be made")
def test_source_root_unreadable(tmp_path, photos):
    photos.chmod(0)
    try:
        out = facesets("embed", photos, tmp_path / "cache")
    finally:
        photos.chmod(0o755)
    one_line(out, "cannot be read", "read access")


def test_plan_neardup_without_cache(tmp_path, photos):
    out = facesets("plan", "neardup", "--export", photos, "--out", tmp_path / "p.json")
    one_line(out, "`facesets plan neardup` needs --cache")
    assert out.returncode == 2 and not (tmp_path / "p.json").exists()


def test_cluster_without_cache(tmp_path):
    out = facesets("cluster", tmp_path / "faces.npz", tmp_path / "out")
    one_line(out, "face cache", "faces.npz", "not found", "facesets embed")


def test_extend_without_earlier_output(tmp_path):
    cache = tmp_path / "faces.npz"
    cache.write_bytes(b"")
    out = facesets("extend", cache, tmp_path / "raw")
    one_line(out, "earlier cluster output", "run `facesets cluster` first")


@pytest.mark.parametrize("content, words", [
    ("{not json", ["plan file", "is not valid JSON", "line 1 column 2", "facesets plan"]),
    ('["a list"]', ["is not a JSON object", "it holds a JSON array"]),
    ('{"pass": "neardup"}', ["is not a facesets plan", 'no "changes" list']),
    ('{"pass": "neardup", "changes": [{"action": "drop", "faceset": "f"}]}', ['drops no "crop"']),
])
def test_malformed_plan_file(tmp_path, photos, content, words):
    plan = tmp_path / "neardup.json"
    plan.write_text(content)
    out = facesets("apply", plan, "--export", photos, "--corpus", tmp_path / "corpus", "--dry-run")
    one_line(out, str(plan), *words)
    assert out.returncode == 2 and not (tmp_path / "corpus").exists()


def test_malformed_prior_plan(tmp_path, photos):
    prior = tmp_path / "occlusion.json"
    prior.write_bytes(b"\xff\xfe not utf-8")
    out = facesets("plan", "bytedup", "--export", photos, "--prior", prior, "--out", tmp_path / "p.json")
    one_line(out, "plan file", "is not valid JSON")


def test_malformed_settings_json(tmp_path, photos):
    out = facesets("plan", "bytedup", "--export", photos, "--out", tmp_path / "p.json", "--settings", "{oops")
    one_line(out, "--settings is not a JSON object")


def test_bad_config_value_is_one_line(tmp_path, photos):
    out = facesets("plan", "bytedup", "--export", photos, "--out", tmp_path / "p.json",
                   "--settings", json.dumps({"export": {"top_n": 0}}))
    one_line(out, "export.top_n")
    assert out.returncode == 2


# ---------------------------------------------------------------- -v, --log and unexpected errors
def test_verbose_shows_the_traceback_and_log_keeps_it(tmp_path, photos):
    args = ("embed", photos, tmp_path / "cache", "--model-pack", tmp_path / "nope")
    quiet = facesets(*args, "--log", tmp_path / "run.log")
    line = one_line(quiet, "model pack folder")
    log = (tmp_path / "run.log").read_text()
    assert "Traceback" in log and "ModelPackError" in log and line in log
    loud = facesets(*args, "-v")
    assert "Traceback (most recent call last)" in loud.stderr and "ModelPackError" in loud.stderr
    assert loud.stderr.splitlines()[-1] == line


def test_unexpected_error_is_one_line_pointing_at_the_log(tmp_path):
    junk = tmp_path / "faces.npz"
    junk.write_text("not a cache")
    log = tmp_path / "logs" / "inspect.log"
    out = facesets("inspect", junk, "--csv", tmp_path / "o.csv", "--log", log)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and out.returncode == 1, out.stderr
    assert lines[0].startswith("facesets inspect failed: ") and f"the traceback is in {log}" in lines[0]
    assert "Traceback (most recent call last)" in log.read_text()
    no_log = facesets("inspect", junk, "--csv", tmp_path / "o.csv")
    assert len(no_log.stderr.splitlines()) == 1 and "run it again with -v" in no_log.stderr


# ---------------------------------------------------------------- facesets models
@needs_packs
def test_models_lists_tasks_and_widths():
    out = facesets("models", SC128, BUFFALO_SHAPES)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert f"{SC128}: OK (detection, recognition 128-d)" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert "detection" in rows["det_500m.onnx"] and rows["det_500m.onnx"].endswith("OK")
    assert "recognition (128-d embedding)" in rows["mobilefacenet_128d.onnx"]
    assert "recognition (512-d embedding)" in rows["w600k_r50.onnx"]
    assert "landmark_2d_106" in rows["2d106det.onnx"] and "landmark_3d_68" in rows["1k3d68.onnx"]
    assert "genderage" in rows["genderage.onnx"] and "detection" in rows["det_10g.onnx"]
    assert out.stderr == ""


@needs_packs
def test_models_flags_an_unusable_pack(tmp_path):
    half = half_pack(tmp_path, "det_500m.onnx")
    (half / "notes.onnx").write_text("not a model")
    out = facesets("models", SC128, half, tmp_path / "missing")
    assert out.returncode == 1
    assert f"{half}: not usable:" in out.stdout and "no face recognizer" in out.stdout
    assert "not a readable ONNX model" in out.stdout
    assert f"{tmp_path / 'missing'}: not usable: model pack folder" in out.stdout
    assert f"{SC128}: OK" in out.stdout


@needs_packs
def test_models_named_pack_under_model_root(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sc").symlink_to(SC128, target_is_directory=True)
    out = facesets("models", "--model-root", tmp_path, no_network=True)  # default: model.pack + installed packs
    assert "sc (" in out.stdout and "OK (detection, recognition 128-d)" in out.stdout
    assert "buffalo_l: not usable" in out.stdout and out.returncode == 1  # the configured default is not there
    assert facesets("models", "sc", "--model-root", tmp_path).returncode == 0


@needs_packs
def test_models_check_writes_the_pack_record(tmp_path):
    out = facesets("models", "--check", BUFFALO_SHAPES, "--out", tmp_path / "cache" / "model.json", "--offline")
    assert out.returncode == 0, out.stderr
    rec = json.loads((tmp_path / "cache" / "model.json").read_text())
    assert Path(rec["folder"]).resolve() == BUFFALO_SHAPES.resolve() and rec["embedding_width"] == 512
    assert set(rec["tasks"]) == {"detection", "recognition", "landmark_2d_106", "landmark_3d_68", "genderage"}
    by = {m["file"]: m for m in rec["models"]}
    w = by["w600k_r50.onnx"]
    assert w["task"] == "recognition" and w["embedding_width"] == 512
    assert w["size"] == (BUFFALO_SHAPES / "w600k_r50.onnx").stat().st_size
    assert w["sha256"] == hashlib.sha256((BUFFALO_SHAPES / "w600k_r50.onnx").read_bytes()).hexdigest()


def test_models_out_needs_check(tmp_path):
    one_line(facesets("models", "--out", tmp_path / "m.json"), "needs --check PACK")


# ---------------------------------------------------------------- settings and --help
def test_settings_overlays_in_order(monkeypatch):
    from facesets.cli.common import RUNTIME_ENV, settings
    from facesets.cli.main import build_parser

    monkeypatch.setenv(RUNTIME_ENV, json.dumps({"model": {"providers": ["CUDAExecutionProvider"]},
                                                "embed": {"io_threads": 2}}))
    args = build_parser().parse_args(["embed", "src", "cache", "--det-size", "320", "--settings",
                                      json.dumps({"model": {"det_size": 480, "det_thresh": 0.4}})])
    cfg = settings(args)
    assert cfg["model"]["det_size"] == 320 and cfg["model"]["det_thresh"] == 0.4  # flag over --settings
    assert cfg["model"]["providers"] == ["CUDAExecutionProvider"] and cfg["embed"]["io_threads"] == 2
    assert cfg["refine"]["min_faces"] == 15  # defaults filled in
    args = build_parser().parse_args(["refine", "c", "o", "--merge-threshold", "0.3"])
    assert settings(args)["refine"]["merge_threshold"] == 0.3
    rule = json.dumps({"cluster": {"threshold": 0.3, "extend_threshold": 0.2}, "identities": {"link_mode": "copy"}})
    cfg = settings(build_parser().parse_args(["cluster", "c", "o", "--settings", rule]))  # as the rule calls it
    assert cfg["cluster"] == {"threshold": 0.3, "extend_threshold": 0.2} and cfg["identities"]["link_mode"] == "copy"
    cfg = settings(build_parser().parse_args(["cluster", "c", "o", "--settings", rule, "--threshold", "0.4"]))
    assert cfg["cluster"]["threshold"] == 0.4  # a flag over --settings


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    from facesets.cli.main import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_subcommand_help_is_complete():
    cmds = _subcommands()
    assert {"embed", "embed-shard", "merge-cache", "plan", "apply", "models", "verify-fsz", "audit"} <= set(cmds)
    for name, p in cmds.items():
        text = p.format_help()
        assert "__" not in text, (name, text)
        for a in p._actions:
            if not a.option_strings:
                assert a.help, f"{name}: positional {a.dest} has no help"
            assert "__" not in str(a.metavar or ""), (name, a.metavar)


def test_model_flags_only_where_a_model_is_loaded():
    cmds = _subcommands()
    options = {name: {o for a in p._actions for o in a.option_strings} for name, p in cmds.items()}
    for name in ("plan", "apply", "export-bundles", "cluster", "refine", "folders", "eras", "undo", "report"):
        assert not {"--model-pack", "--providers", "--det-size", "--det-thresh"} & options[name], name
    for name in ("embed", "embed-shard", "enrich", "export-crops", "export-swap", "verify-fsz", "audit"):
        assert "--model-pack" in options[name], name
    for name in ("plan", "apply"):
        assert "--settings" in options[name]  # the rules pass their settings


def test_help_runs_for_every_subcommand():
    out = facesets("plan", "--help")
    assert out.returncode == 0 and "--model-pack" not in out.stdout and "PASS" in out.stdout
