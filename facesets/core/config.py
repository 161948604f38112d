"""Config loading and validation against the package's JSON-schema (defaults filled in), and the
generated config/config.yaml: `python -m facesets.core.config --write config/config.yaml` (`--check`
exits 1 when the file differs from what the schema gives)."""
from __future__ import annotations

import argparse
import copy
import re
import sys
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from facesets.core.errors import ConfigError  # noqa: F401  (raised here; the class lives with the other errors)

SCHEMA_FILE = "config.schema.yaml"


@lru_cache(maxsize=1)
def schema() -> dict:
    text = resources.files("facesets.core").joinpath("schema", SCHEMA_FILE).read_text()
    return yaml.safe_load(text)


def schema_path() -> Path:
    return Path(str(resources.files("facesets.core").joinpath("schema", SCHEMA_FILE)))


def _with_defaults(validator_class):
    """A validator that fills `default` values in as it descends, as Snakemake's validate does."""
    validate_props = validator_class.VALIDATORS["properties"]

    def fill(validator, properties, instance, sub_schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_props(validator, properties, instance, sub_schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key_of(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties":
        # the unexpected key is only named in the message; surface it as the key
        return ".".join(parts) or "<top level>"
    return ".".join(parts) or "<top level>"


# keys renamed since release: (section, old) -> new. A config that still uses an old key is told the new
# name in one line, instead of a generic "additional properties" error
RENAMED = {
    ("dedup", "similarity"): "near_duplicate_similarity",
    ("export", "dup_similarity"): "burst_similarity",
}


def check_renamed(cfg: dict | None) -> None:
    """Raise ConfigError, one line per key, for every renamed key `cfg` still uses."""
    lines = []
    for (section, old), new in RENAMED.items():
        sec = (cfg or {}).get(section)
        if isinstance(sec, dict) and old in sec:
            lines.append(f"config key {section}.{old} was renamed to {section}.{new}: rename it in your config file")
    if lines:
        raise ConfigError("\n".join(lines))


def validate(cfg: dict | None) -> dict:
    """Return a validated deep copy of `cfg` with every default filled in."""
    check_renamed(cfg)
    cfg = copy.deepcopy(cfg or {})
    errors = sorted(_Validator(schema()).iter_errors(cfg), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_key_of(e)}: {e.message}" for e in errors]
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines))
    names = [s["name"] for s in cfg.get("sources", [])]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError(f"sources: duplicate source name(s) {sorted(dup)}")
    return cfg


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def load(*paths: str | Path) -> dict:
    """Load and overlay YAML files left to right, then validate."""
    cfg: dict[str, Any] = {}
    for p in paths:
        with open(p, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{p}: the top level must be a mapping")
        cfg = deep_merge(cfg, data)
    return validate(cfg)


@lru_cache(maxsize=1)
def _defaults() -> dict:
    return validate({})


def defaults() -> dict:
    """The schema defaults: the CLI's option defaults come from here, so CLI and pipeline agree."""
    return copy.deepcopy(_defaults())


# ---------------------------------------------------------------- config/config.yaml, generated from the schema
CONFIG_HEADER = (
    "# facesets configuration: every key with its default and why. Generated from\n"
    "# facesets/core/schema/config.schema.yaml by `python -m facesets.core.config --write config/config.yaml`:\n"
    "# change the schema, not this file. Override any key with a second YAML: `snakemake --configfile my.yaml`.\n"
)
COMMENT_COLUMN = 34  # where the inline comments start (a longer line gets three spaces)
MAX_WHY = 90  # characters of a one-line why


def _flow(value) -> str:
    """One value as flow-style YAML (lists as [a, b]), quoted only where YAML needs it."""
    return yaml.safe_dump([value], default_flow_style=True, width=1 << 30, allow_unicode=True).strip()[1:-1]


def why(spec: dict, key: str = "?") -> str:
    """A property's one-line comment: its `x-why`, else its description's first sentence."""
    text = spec.get("x-why") or re.split(r"(?<=[a-z)\]])\.\s+(?=[A-Z])", spec.get("description", ""))[0]
    text = " ".join(text.split()).rstrip(".")
    if not text or len(text) > MAX_WHY:
        raise ValueError(f"schema property {key}: needs a description (or x-why) of 1..{MAX_WHY} characters")
    return text


def _line(indent: int, body: str, comment: str | None) -> str:
    text = " " * indent + body
    if comment:
        text = text.ljust(COMMENT_COLUMN) if len(text) < COMMENT_COLUMN - 2 else text + "   "
        text += "# " + comment
    return text


def _render_props(props: dict, indent: int, path: str) -> list[str]:
    out: list[str] = []
    for key, spec in props.items():
        name = f"{path}{key}"
        default = spec["default"]
        if indent == 0 and out:
            out.append("")
        if spec.get("type") == "object" and "properties" in spec:
            if indent == 0:
                out += [f"# {why(spec, name)}", f"{key}:"]
            else:
                out.append(_line(indent, f"{key}:", why(spec, name)))
            out += _render_props(spec["properties"], indent + 2, name + ".")
        elif isinstance(default, dict) and default:
            out.append(_line(indent, f"{key}:", why(spec, name)))
            out += [_line(indent + 2, f"{k}: {_flow(v)}", None) for k, v in default.items()]
        elif indent == 0 and default == [] and spec.get("examples"):
            out += [f"# {why(spec, name)}", f"{key}: {_flow(default)}"]
        else:
            out.append(_line(indent, f"{key}: {_flow(default)}", why(spec, name)))
        for example in spec.get("examples", [])[:1] if default == [] else []:
            dumped = yaml.safe_dump(example, default_flow_style=False, sort_keys=False, allow_unicode=True)
            out += ["#" + " " * (indent + 2) + ln for ln in dumped.splitlines()]
    return out


def render_config_yaml() -> str:
    """config/config.yaml as the schema defines it: every key, its default and a one-line why, nested as the
    config is, lists in flow style. Loading it gives exactly `defaults()`."""
    return CONFIG_HEADER + "\n" + "\n".join(_render_props(schema()["properties"], 0, "")) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write or check the generated config file (the CLI can wire this as a subcommand)."""
    ap = argparse.ArgumentParser(prog="python -m facesets.core.config",
                                 description="config/config.yaml from the config schema")
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="PATH", help="write the generated file to PATH")
    mode.add_argument("--check", metavar="PATH", help="exit 1 when PATH differs from the generated file")
    args = ap.parse_args(argv)
    text = render_config_yaml()
    if args.write:
        Path(args.write).write_text(text, encoding="utf-8")
        return 0
    try:
        same = Path(args.check).read_text(encoding="utf-8") == text
    except OSError:
        same = False
    if not same:
        print(f"{args.check} is not what the schema generates: run "
              f"`python -m facesets.core.config --write {args.check}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
