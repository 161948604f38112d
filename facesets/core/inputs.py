"""Checks on what a command is given, before any work: each failure is an InputError whose one-line
message names the input and the fix (facesets.core.messages)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from facesets.core import messages
from facesets.core.errors import InputError

KINDS = {dict: "object", list: "array"}


def source_root(path: str | Path) -> Path:
    """A photo source's root: an existing folder this user can list."""
    p = Path(os.path.expanduser(str(path)))
    if not p.exists():
        raise InputError(messages.SOURCE_MISSING.format(path=path))
    if not p.is_dir():
        raise InputError(messages.SOURCE_NOT_A_FOLDER.format(path=path))
    try:
        with os.scandir(p) as it:
            next(it, None)
    except OSError as exc:
        raise InputError(messages.SOURCE_UNREADABLE.format(path=path, reason=exc.strerror or exc)) from None
    return p


def existing(path: str | Path | None, what: str, fix: str) -> Path:
    """An input file or folder that an earlier step makes."""
    if path is None or not Path(path).exists():
        raise InputError(messages.INPUT_MISSING.format(what=what, path=path, fix=fix))
    return Path(path)


def needed(value, cmd: str, option: str, what: str):
    """An option that is optional in general but required here (e.g. `plan neardup` needs --cache)."""
    if value in (None, "", []):
        raise InputError(messages.OPTION_NEEDED.format(cmd=cmd, option=option, what=what))
    return value


def read_json(path: str | Path, what: str, fix: str, expected: type = dict):
    """A JSON input: missing, unreadable, malformed or of the wrong kind is one InputError naming the file."""
    existing(path, what, fix)
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except UnicodeDecodeError as exc:
        raise InputError(messages.JSON_MALFORMED.format(what=what, path=path, reason=exc.reason, fix=fix)) from None
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
        raise InputError(messages.JSON_MALFORMED.format(what=what, path=path, reason=reason, fix=fix)) from None
    except OSError as exc:
        raise InputError(messages.JSON_MALFORMED.format(what=what, path=path, reason=exc.strerror or exc,
                                                        fix=fix)) from None
    if not isinstance(data, expected):
        want, got = KINDS.get(expected, expected.__name__), KINDS.get(type(data), type(data).__name__)
        raise InputError(messages.JSON_UNEXPECTED.format(what=what, path=path, expected=f"a JSON {want}",
                                                         reason=f"it holds a JSON {got}", fix=fix))
    return data
