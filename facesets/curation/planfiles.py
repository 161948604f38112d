"""Plan files as inputs: read and check them (a malformed one is one InputError naming the file), order
them as the passes run, and describe what applying them would do (`facesets apply --dry-run`)."""
from __future__ import annotations

import json
from pathlib import Path

from facesets.core import inputs, messages
from facesets.core.errors import InputError
from facesets.curation.plans import ORDER


def _check(plan: dict, path: str) -> None:
    def bad(reason: str) -> InputError:
        return InputError(messages.JSON_UNEXPECTED.format(what="plan file", path=path, expected="a facesets plan",
                                                          reason=reason, fix=messages.PLAN_FIX))

    if not isinstance(plan.get("pass"), str):
        raise bad('no "pass" name')
    if not isinstance(plan.get("changes"), list):
        raise bad('no "changes" list')
    for i, ch in enumerate(plan["changes"]):
        if not isinstance(ch, dict) or not all(isinstance(ch.get(k), str) for k in ("action", "faceset")):
            raise bad(f'change {i} has no "action" and "faceset"')
        if ch["action"] == "drop" and not isinstance(ch.get("crop"), str):
            raise bad(f'change {i} drops no "crop"')


def read_plans(paths: list[str] | None) -> list[dict]:
    """The plans, checked, in pass order (an unknown pass last)."""
    plans = []
    for path in paths or []:
        plan = inputs.read_json(path, "plan file", messages.PLAN_FIX)
        _check(plan, path)
        plans.append(plan)
    return sorted(plans, key=lambda p: ORDER.index(p["pass"]) if p["pass"] in ORDER else len(ORDER))


def dry_run_lines(export_dir: str | Path, plans: list[dict], thin_below: int = 0) -> list[str]:
    """One line per planned change, then the counts the corpus would have: nothing is moved."""
    from facesets.curation.state import counts, desired, inventory

    inv = inventory(export_dir)
    want = desired(inv, plans, thin_below)
    lines = []
    for p in plans:
        for ch in p["changes"]:
            target = ch.get("crop", ch.get("into", ch.get("to", "")))
            lines.append(f'{p["pass"]:<12} {ch["action"]:<10} {ch["faceset"]:<16} {target:<40} {ch.get("reason", "")}')
    lines.append(json.dumps(counts(inv, want)))
    return lines
