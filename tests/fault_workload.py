"""A small end-to-end workload (embed -> cache -> refine -> export -> bundles -> plans -> apply) that the
fault tests kill and resume. Usage: python fault_workload.py WORKDIR PACK"""
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facesets.identities import refine  # noqa: E402
from facesets.core import atomic, config
from facesets.core.engine import FaceEngine  # noqa: E402
from facesets.curation import corpus, plans
from facesets.curation.corpus import inventory  # noqa: E402
from facesets.embed.cache import FaceCache  # noqa: E402
from facesets.embed.embedder import embed_source  # noqa: E402
from facesets.export.exporter import export_bundles, export_crops  # noqa: E402


def main(work: Path, pack: str) -> None:
    cfg = config.defaults()
    cfg["model"]["pack"] = pack
    cfg["embed"]["flush_every"] = 2
    cfg["embed"]["io_threads"] = 1
    engine = FaceEngine(pack)
    embed_source(work / "src", work / "store", "lib", cfg, lambda: engine, progress=False)
    FaceCache.load(work / "store").save(work / "faces.npz")
    man = refine.run(work / "faces.npz", work / "refined", dict(cfg["refine"], min_faces=2))
    ident = {n: [k for k, _ in fs["faces"]] for n, fs in man["facesets"].items()}
    export_crops(work / "faces.npz", ident, work / "export", dict(cfg["export"], burst_similarity=1.0),
                 cfg["verify"]["checks"][:1], lambda: engine)
    export_bundles(work / "export", 3)
    inv = inventory(work / "export")
    cache = FaceCache.load(work / "faces.npz")
    ps = [plans.plan_bytedup(inv, plans.prior_state(inv, []), work / "export", cfg["curation"]["bytedup"])]
    ps.append(plans.plan_neardup(inv, plans.prior_state(inv, ps), cache, dict(cfg["curation"]["neardup"], similarity=0.93)))
    for p in ps:
        atomic.write_json(work / f"plan_{p['pass']}.json", p)
    corpus.apply(work / "export", work / "corpus", ps)
    (work / "DONE").write_text(json.dumps({"ok": True}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
