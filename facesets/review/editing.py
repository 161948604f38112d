"""Writing the decisions file: one change at a time, as the review page's clicks make them.

The file is the person's as much as ours: it is read and written with ruamel.yaml's round-trip mode, so a
hand-edited file keeps its comments, its order and its flow or block style; only the entry a click changes
is touched. Every change is validated as a whole file before anything is written (an invalid result raises
DecisionsError and leaves the file as it was), and written atomically while holding the results folder's run
lock, so a change is refused, with the live run named, while a pipeline run is using what it decided.
"""
from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Callable

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from facesets.core import atomic, runlock
from facesets.core.layout import Layout
from facesets.review.decisions import LISTS, SECTIONS, check

HEADER = ("# The person's decisions for facesets: written by `facesets review`, and fine to edit by hand.\n"
          "# Each stage applies its part when the pipeline next runs (snakemake --cores all); see the README,\n"
          "# 'Review and correct'. Faces are <sha256>:<face index> keys, facesets their numbers.\n")
ANCHORS = 3  # face keys remembered per decided faceset (numbers across a fresh results folder)
_WRITING = threading.Lock()  # one change at a time within this process; the run lock guards against the pipeline


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _plain(node):
    """The round-trip document as plain dicts and lists (what the validator and the stages read)."""
    return json.loads(json.dumps(node, default=str)) if node is not None else {}


def _flow(items: list) -> CommentedSeq:
    seq = CommentedSeq(items)
    seq.fa.set_flow_style()
    return seq


class Editor:
    """Applies one decision at a time to the decisions file of a results folder."""

    def __init__(self, path: str | Path, results: str | Path, anchor_keys: Callable[[str], list[str]] | None = None):
        self.path, self.layout = Path(path), Layout(results)
        self.anchor_keys = anchor_keys or (lambda f: [])

    def read(self):
        if not self.path.is_file():
            return None
        return _yaml().load(self.path.read_text(encoding="utf-8"))

    def change(self, action: str, **args) -> dict:
        """Apply `action` (a method name below) and write the file; returns the decisions now in force."""
        with _WRITING, runlock.held_briefly(self.layout.results, self.layout.run_lock):
            doc = self.read()
            fresh = doc is None
            doc = doc if isinstance(doc, CommentedMap) else CommentedMap()
            touched = getattr(self, f"_{action}")(doc, **args)
            for f in touched:
                self._anchor(doc, f)
            decisions = check(_plain(doc), self.path)
            buf = io.StringIO()
            _yaml().dump(doc, buf)
            atomic.write_text(self.path, (HEADER if fresh else "") + buf.getvalue())
            return decisions

    # ---------------------------------------------------------------- helpers on the document
    @staticmethod
    def _section(doc: CommentedMap, name: str):
        if doc.get(name) is None:
            doc[name] = CommentedSeq() if name in LISTS else CommentedMap()
        return doc[name]

    @staticmethod
    def _prune(doc: CommentedMap, name: str) -> None:
        if name in doc and not doc[name]:
            del doc[name]

    def _anchor(self, doc: CommentedMap, faceset: str) -> None:
        if faceset in (doc.get("anchors") or {}):
            return
        keys = self.anchor_keys(faceset)[:ANCHORS]
        if keys:
            self._section(doc, "anchors")[faceset] = _flow(list(keys))

    # ---------------------------------------------------------------- the decisions
    def _name(self, doc, faceset: str, name: str) -> list[str]:
        name = name.strip()
        if name:
            self._section(doc, "names")[faceset] = name
        elif faceset in (doc.get("names") or {}):
            del doc["names"][faceset]
            self._prune(doc, "names")
        return [faceset]

    def _merge(self, doc, faceset: str, into: str) -> list[str]:
        """`faceset` is the same person as `into`, which keeps its number (the others merge into it)."""
        same = self._section(doc, "same")
        home = next((g for g in same if into in g), None)
        other = next((g for g in same if faceset in g and g is not home), None)
        if home is None and other is not None:
            other.insert(0, into)
        elif home is None:
            same.append(_flow([into, faceset]))
        else:
            for f in ([faceset] if other is None else list(other)):
                if f not in home:
                    home.append(f)
            if other is not None:
                same.remove(other)
        self._undifferent(doc, faceset, into)
        return [faceset, into]

    def _unmerge(self, doc, faceset: str) -> list[str]:
        for g in doc.get("same") or []:
            if faceset in g:
                g.remove(faceset)
        self._drop_single(doc)
        return []

    def _drop_single(self, doc) -> None:
        same = doc.get("same") or []
        for g in [g for g in same if len(g) < 2]:
            same.remove(g)
        self._prune(doc, "same")

    def _different(self, doc, faceset: str, other: str) -> list[str]:
        self._unmerge_pair(doc, faceset, other)
        pairs = self._section(doc, "different")
        if not any(set(p) == {faceset, other} for p in pairs):
            pairs.append(_flow([faceset, other]))
        return [faceset, other]

    def _unmerge_pair(self, doc, a: str, b: str) -> None:
        for g in doc.get("same") or []:
            if a in g and b in g:
                g.remove(b if g[0] != b else a)
        self._drop_single(doc)

    def _undifferent(self, doc, faceset: str, other: str) -> list[str]:
        pairs = doc.get("different") or []
        for p in [p for p in pairs if set(p) == {faceset, other}]:
            pairs.remove(p)
        self._prune(doc, "different")
        return []

    def _remove(self, doc, faceset: str, key: str) -> list[str]:
        keys = self._section(doc, "remove").setdefault(faceset, _flow([]))
        if key not in keys:
            keys.append(key)
        if (doc.get("assign") or {}).get(key) == faceset:
            self._unassign(doc, key)
        return [faceset]

    def _unremove(self, doc, faceset: str, key: str) -> list[str]:
        rm = doc.get("remove") or {}
        if key in rm.get(faceset, []):
            rm[faceset].remove(key)
            if not rm[faceset]:
                del rm[faceset]
        self._prune(doc, "remove")
        return []

    def _assign(self, doc, key: str, faceset: str) -> list[str]:
        self._unremove(doc, faceset, key)
        self._section(doc, "assign")[key] = faceset
        return [faceset]

    def _unassign(self, doc, key: str) -> list[str]:
        if key in (doc.get("assign") or {}):
            del doc["assign"][key]
        self._prune(doc, "assign")
        return []

    def _keep(self, doc, key: str) -> list[str]:
        keep = self._section(doc, "keep")
        if key not in keep:
            keep.append(key)
        return []

    def _unkeep(self, doc, key: str) -> list[str]:
        if key in (doc.get("keep") or []):
            doc["keep"].remove(key)
        self._prune(doc, "keep")
        return []

    def _hide(self, doc, faceset: str) -> list[str]:
        hide = self._section(doc, "hide")
        if faceset not in hide:
            hide.append(faceset)
        return [faceset]

    def _unhide(self, doc, faceset: str) -> list[str]:
        if faceset in (doc.get("hide") or []):
            doc["hide"].remove(faceset)
        self._prune(doc, "hide")
        return []


ACTIONS = {
    # action: the form fields it takes
    "name": ("faceset", "name"), "merge": ("faceset", "into"), "unmerge": ("faceset",),
    "different": ("faceset", "other"), "undifferent": ("faceset", "other"),
    "remove": ("faceset", "key"), "unremove": ("faceset", "key"), "assign": ("key", "faceset"),
    "unassign": ("key",), "keep": ("key",), "unkeep": ("key",), "hide": ("faceset",), "unhide": ("faceset",),
}
assert set(SECTIONS) >= {"names", "same", "different", "remove", "assign", "keep", "hide"}
