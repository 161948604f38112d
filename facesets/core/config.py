"""Config loading and validation against the package's JSON-schema (defaults filled in)."""
from __future__ import annotations

import copy
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


def validate(cfg: dict | None) -> dict:
    """Return a validated deep copy of `cfg` with every default filled in."""
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
