"""Which identities the export turns into facesets: read from the refine, folders and eras manifests."""
from __future__ import annotations

from facesets.core import inputs

FIX = "run the stage that writes it first (refine, folders or eras), or fix the path"


def identities_of(manifest_paths: list[str]) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """Identities to export (name -> face keys) and their bundle names/markers, from refine, folders and
    eras manifests (later manifests win on a shared name)."""
    idents, meta = {}, {}
    for path in manifest_paths:
        m = inputs.read_json(path, "identities manifest", FIX)
        groups = dict(m.get("facesets", m.get("persons", {})))
        groups.update(m.get("thin_eras", {}))
        for n, g in groups.items():
            idents[n] = [k for k, _ in (g["faces"] if isinstance(g, dict) else g)]
            if m.get("kind") == "folders":
                meta[n] = {"bundle_prefix": g["label"],
                           "markers": {f"{g['label']}.txt": f"{g['label']}: {g['folder']}\n"}}
            elif m.get("kind") == "eras":
                meta[n] = {"markers": {f"{g['label']}.txt": f"{n}: era of {g['parent']}, dominant year "
                                                             f"{g['dominant_year']}, {g['n_faces']} faces\n"},
                           "thin": g["thin"]}
            if isinstance(g, dict) and g.get("assigned"):  # the person's assign decisions (refine)
                meta.setdefault(n, {})["assigned"] = g["assigned"]
    return idents, meta


def singletons_of(raw_manifest: str | None) -> list[str]:
    """The face keys of the raw clustering's singletons (candidates to rescue into _candidates/)."""
    if not raw_manifest:
        return []
    m = inputs.read_json(raw_manifest, "raw cluster manifest", "run `facesets cluster` first, or fix the path")
    return [k for k, _ in m["singletons"]]
