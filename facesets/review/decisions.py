"""The decisions file: a pipeline input like the config, written by the review page or by hand.

```yaml
names:     {faceset_003: anna}              # bundles anna_top30.fsz / anna_all.fsz
same:      [[faceset_003, faceset_017]]     # one person: merged into the first listed
different: [[faceset_003, faceset_005]]     # never merged (refine's centroid merge, consolidation)
remove:    {faceset_003: ["<sha256>:<i>"]}  # not this person: leaves the faceset for good
assign:    {"<sha256>:<i>": faceset_003}    # put a face into this faceset
keep:      ["<sha256>:<i>"]                 # no curation pass may drop this crop
hide:      [faceset_009]                    # not exported
anchors:   {faceset_003: ["<sha256>:<i>"]}  # (review page) keeps numbers across a fresh results folder
```

Each decision acts in one stage, which gets only its part (`part`) as a tracked param, so changing a decision
re-runs what it affects and nothing else: membership (remove, assign, different) in refine, hide in
export_crops, names in export_bundles, same/different in the consolidation plan, keep in the crop-dropping
plans. A decision that can no longer apply is reported by the stage (`unapplied`), never an error.
"""
from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jsonschema
import yaml

from facesets.core import messages
from facesets.core.errors import ConfigError

SECTIONS = ("names", "same", "different", "remove", "assign", "keep", "hide", "anchors")
LISTS = ("same", "different", "keep", "hide")
# which stage applies which decisions (the rule's `decisions` param is exactly this part)
PARTS = {
    "refine": ("remove", "assign", "different"),
    "export_crops": ("hide",),
    "export_bundles": ("names",),
    "consolidate": ("same", "different"),
    "drops": ("keep",),  # occlusion, bytedup, neardup, multiface
}
# Windows refuses these as file names whatever the extension; roop users copy bundles there
RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
NAME_PUNCTUATION = set(" -_.'()&,+")
MAX_NAME = 64


class DecisionsError(ConfigError):
    """The decisions file is malformed or contradicts itself; the message names each bad entry."""


@lru_cache(maxsize=1)
def schema() -> dict:
    text = resources.files("facesets.review").joinpath("schema", "decisions.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def empty() -> dict:
    return {s: ([] if s in LISTS else {}) for s in SECTIONS}


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a faceset's bundles (None when it can): any Unicode letters, digits and a few
    punctuation marks; no path separators, no '..', no names Windows reserves, nothing of our own layout."""
    if not isinstance(name, str) or not name.strip():
        return "a name cannot be empty"
    if name != name.strip():
        return "no spaces at the start or end"
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters"
    if "/" in name or "\\" in name:
        return "no / or \\ (a name becomes a file name)"
    if name in (".", "..") or ".." in name:
        return "no '..' (a name becomes a file name)"
    if name.startswith((".", "_")) or name.endswith("."):
        return "cannot start with '.' or '_' or end with '.' (hidden, our own folders, Windows)"
    if name.split(".")[0].casefold() in RESERVED:
        return f"{name.split('.')[0]!r} is a reserved file name on Windows"
    if name.casefold().startswith("faceset_"):
        return "cannot look like a faceset number (faceset_NNN)"
    for ch in name:
        if ch not in NAME_PUNCTUATION and unicodedata.category(ch)[0] not in "LNM":
            return f"{ch!r} is not allowed (letters, digits, spaces and {''.join(sorted(NAME_PUNCTUATION - {' '}))})"
    return None


def _entry(error: jsonschema.ValidationError) -> str:
    path = [str(p) for p in error.absolute_path]
    if error.validator in ("propertyNames", "additionalProperties") and not path:
        return "<top level>"
    return ".".join(path) or "<top level>"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern":
        face = error.schema.get("pattern") == schema()["$defs"]["face"]["pattern"]
        what = "a face key <sha256>:<face index>" if face else "a faceset number such as faceset_003"
        return f"{error.instance!r} is not {what}"
    if error.validator == "propertyNames":
        return f"{error.instance!r}: {error.message}"
    return error.message


def normalize(data) -> dict:
    """Every section present (an empty `names:` line reads as None), names in NFC."""
    out = empty()
    for k, v in (data or {}).items():
        out[k] = v if v is not None else ([] if k in LISTS else {})
    if isinstance(out.get("names"), dict):
        out["names"] = {f: unicodedata.normalize("NFC", n) if isinstance(n, str) else n for f, n in out["names"].items()}
    return out


def problems(data) -> list[str]:
    """Every problem of a decisions mapping, one line each naming the entry ('' when it is fine)."""
    if not isinstance(data, dict):
        return ["<top level>: the file must hold a mapping (names:, same:, ...)"]
    d = normalize(data)
    errs = sorted(jsonschema.Draft202012Validator(schema()).iter_errors(d), key=lambda e: list(e.absolute_path))
    if errs:
        return [f"{_entry(e)}: {_message(e)}" for e in errs]
    return _contradictions(d)


def _contradictions(d: dict) -> list[str]:
    out = []
    seen: dict[str, str] = {}
    for fs, name in sorted(d["names"].items()):
        why = name_problem(name)
        if why:
            out.append(f"names.{fs}: {name!r}: {why}")
        elif name.casefold() in seen:
            out.append(f"names.{fs}: {name!r} is already the name of {seen[name.casefold()]} (names are unique)")
        else:
            seen[name.casefold()] = fs
    where: dict[str, int] = {}
    for i, group in enumerate(d["same"]):
        for fs in group:
            if fs in where:
                out.append(f"same.{i}: {fs} is already in same.{where[fs]}: list one person's facesets once")
            where.setdefault(fs, i)
    for i, (a, b) in enumerate(d["different"]):
        if a in where and where.get(b) == where[a]:
            out.append(f"different.{i}: {a} and {b} are also the same person (same.{where[a]}): keep one of the two")
    for key, fs in sorted(d["assign"].items()):
        if key in d["remove"].get(fs, []):
            out.append(f"assign.{key}: assigned to {fs} and removed from it (remove.{fs}): keep one of the two")
    return out


def check(data, path: str | Path = "<decisions>") -> dict:
    """The validated, normalized decisions; DecisionsError names every bad entry."""
    found = problems(data)
    if found:
        raise DecisionsError(messages.DECISIONS_INVALID.format(path=path, problems="\n".join(f"  {p}" for p in found)))
    return normalize(data)


def load(path: str | Path | None) -> dict:
    """The decisions in `path`; a missing file (or none configured) means no decisions."""
    if path is None or not Path(path).is_file():
        return empty()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        reason = " ".join(str(exc).split())
        raise DecisionsError(messages.DECISIONS_UNREADABLE.format(path=path, reason=reason)) from None
    return check(data if data is not None else {}, path)


def _canonical(section: str, value):
    """A section in an order-free form, so that re-ordering the file re-runs nothing (a `same` group keeps its
    order: its first faceset is the one the others merge into)."""
    if section in ("keep", "hide"):
        return sorted(value)
    if section == "different":
        return sorted(sorted(pair) for pair in value)
    if section == "same":
        return sorted(value, key=lambda g: g[0])
    if section == "remove":
        return {fs: sorted(keys) for fs, keys in sorted(value.items()) if keys}
    return dict(sorted(value.items()))


def part(d: dict, stage: str) -> str:
    """The decisions one stage applies, as one key-sorted JSON string (the rule's `decisions` param)."""
    return json.dumps({s: _canonical(s, d[s]) for s in PARTS[stage]}, sort_keys=True, ensure_ascii=False)


def from_arg(text: str | None) -> dict:
    """The decisions a stage was given on its command line (`--decisions JSON`, as the rule passes it, or a
    decisions YAML file); every section present, the ones not given empty."""
    if not text:
        return empty()
    if not text.lstrip().startswith("{"):
        return load(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DecisionsError(messages.DECISIONS_PART.format(reason=exc.msg)) from None
    return check(data, "--decisions")


def unapplied(decision: str, reason: str) -> dict:
    """One decision a stage could not apply, and why (reported in the stage's output, its log and the report)."""
    return {"decision": decision, "reason": reason}


def anchored_numbers(d: dict) -> int:
    """The highest faceset number any decision names (new facesets are numbered after it)."""
    names = set(d["names"]) | set(d["hide"]) | set(d["remove"]) | set(d["assign"].values()) | set(d["anchors"])
    names |= {f for g in d["same"] + d["different"] for f in g}
    nums = [int(n.split("_")[1]) for n in names]
    return max(nums, default=0)
