"""What every subcommand shares: --log/-v, the settings flags, the model flags, config-section flags, and
the one helper that turns them into a validated config (`settings`).

A flag whose dest is `<section>__<key>` overrides that config key: the section flags are generated from
the schema, so a CLI flag and a config key always have the same name, type and default.
"""
from __future__ import annotations

import argparse
import json
import os

from facesets.core import config as fsconfig
from facesets.core import messages
from facesets.core.errors import ConfigError
from facesets.core.workflow import RUNTIME_ENV  # speed-only settings Snakemake hands every job

METAVARS = {"number": "X", "integer": "N", "string": "TEXT"}
TYPES = {"number": float, "integer": int, "string": str}


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--log", metavar="FILE", help="also write the log (and any error's traceback) to FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging; an error shows its traceback")
    return p


COMMON = _common()


def command(sub, name: str, func, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """One subcommand: every subcommand takes --log and -v."""
    p = sub.add_parser(name, help=help, description=description or help, parents=[COMMON])
    p.set_defaults(func=func, cmd=name)
    return p


def settings_flags(p: argparse.ArgumentParser) -> None:
    """Config overlays: what Snakemake passes (--settings, --runtime) and what a user may (--config)."""
    p.add_argument("--config", action="append", metavar="YAML", help="config YAML overlay (repeatable)")
    p.add_argument("--settings", help=argparse.SUPPRESS)  # JSON from Snakemake params (tracked)
    p.add_argument("--runtime", help=argparse.SUPPRESS)  # JSON of speed-only knobs (not tracked)


def model_flags(p: argparse.ArgumentParser) -> None:
    """Only on commands that load the face model."""
    s = argparse.SUPPRESS
    p.add_argument("--model-pack", dest="model__pack", metavar="PACK", default=s,
                   help="pack folder, or the name of a pack under --model-root (buffalo_l)")
    p.add_argument("--model-root", dest="model__root", metavar="DIR", default=s,
                   help="where named packs are installed (default ~/.insightface; packs in DIR/models/NAME)")
    p.add_argument("--providers", dest="model__providers", metavar="LIST", default=s, type=lambda v: v.split(","),
                   help="comma-separated onnxruntime providers, e.g. CUDAExecutionProvider,CPUExecutionProvider")
    p.add_argument("--det-size", dest="model__det_size", metavar="N", type=int, default=s,
                   help="detector input size (default 640)")
    p.add_argument("--det-thresh", dest="model__det_thresh", metavar="X", type=float, default=s,
                   help="detection score threshold (default 0.5)")
    settings_flags(p)


def section_flags(p: argparse.ArgumentParser, section: str, only: tuple[str, ...] | None = None) -> None:
    """One --flag per scalar config key of `section`, typed from the schema; given flags override the config."""
    props = fsconfig.schema()["properties"][section]["properties"]
    for key, spec in props.items():
        t = spec.get("type")
        if (only and key not in only) or (t not in TYPES and t != "boolean"):
            continue
        desc = " ".join(str(spec.get("description", "")).split()).replace("%", "%%")
        flag, dest = "--" + key.replace("_", "-"), f"{section}__{key}"
        if t == "boolean":
            p.add_argument(flag, dest=dest, action="store_true", default=argparse.SUPPRESS, help=f"{desc} (sets it on)")
        else:
            p.add_argument(flag, dest=dest, type=TYPES[t], metavar=METAVARS[t], default=argparse.SUPPRESS,
                           help=f"{desc} (default {spec.get('default')})")


def _overlay(cfg: dict, flag: str, text: str | None) -> dict:
    if not text:
        return cfg
    try:
        over = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(messages.SETTINGS_MALFORMED.format(flag=flag, reason=exc.msg)) from None
    if not isinstance(over, dict):
        raise ConfigError(messages.SETTINGS_MALFORMED.format(flag=flag, reason=f"a {type(over).__name__}"))
    return fsconfig.deep_merge(cfg, over)


def settings(args: argparse.Namespace) -> dict:
    """The config a command runs with: defaults, then --config YAML files, then --settings JSON, then the
    speed-only runtime JSON ($FACESETS_RUNTIME, then --runtime), then `<section>__<key>` flags; validated."""
    cfg = fsconfig.defaults()
    for path in getattr(args, "config", None) or []:
        cfg = fsconfig.deep_merge(cfg, fsconfig.load(path))
    cfg = _overlay(cfg, "--settings", getattr(args, "settings", None))
    cfg = _overlay(cfg, f"${RUNTIME_ENV}", os.environ.get(RUNTIME_ENV))
    cfg = _overlay(cfg, "--runtime", getattr(args, "runtime", None))
    for dest, value in vars(args).items():
        section, sep, key = dest.partition("__")
        if sep and value is not None:
            cfg.setdefault(section, {})[key] = value
    return fsconfig.validate(cfg)


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _at_least_one(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is less than 1")
    return n


def threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_at_least_one, default=usable_cores(), metavar="N",
                   help="crops worked on at once (default: every usable core; the pipeline passes the rule's "
                        "threads); the output is the same for any N")


def engine_factory(cfg: dict, threads: int = 0, modules=None):
    """A callable that builds the face engine when a stage first needs it (nothing is loaded if no photo is new)."""
    def make():
        from facesets.core.engine import BASE_MODULES, FaceEngine

        return FaceEngine.from_config(cfg, modules=modules or BASE_MODULES, threads=threads)

    return make


def check_model(cfg: dict, need: tuple[str, ...] | None = None):
    """Check the pack before any work (one line with the fix if it cannot be used); never downloads."""
    from facesets.core import models

    return models.check(cfg["model"]["pack"], cfg["model"]["root"], *([need] if need else []))
