#!/usr/bin/env python
"""The review page at library scale: how long the people page of N facesets takes to open.

A synthetic results folder (tests/review_util.py: the export and corpus manifests, per-faceset manifests, one
small PNG per faceset) with N facesets; a review server on 127.0.0.1; then, timed from the client side:
- the first people page right after the server started (cold: nothing read yet), and the median of 5 more;
- the last page (paging is by slicing the sorted list, so any page costs the same);
- the thumbnails of one page (120 crops) made the first time, and served from the cache the second time;
- one faceset page.

    python benchmarks/bench_review.py [--facesets 2000]      (smoke: --quick, 200 facesets)

Target: the people page of 2,000 facesets opens in under a second.
"""
from __future__ import annotations

import argparse
import http.client
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from review_util import synthetic_results  # noqa: E402

from facesets.review.server import PAGE, serve  # noqa: E402


def fetch(port: int, path: str) -> tuple[float, bytes]:
    t = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    assert resp.status == 200, (path, resp.status)
    return time.perf_counter() - t, body


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--facesets", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="200 facesets")
    args = ap.parse_args()
    n = 200 if args.quick else args.facesets
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        lay = synthetic_results(Path(tmp) / "results", n_facesets=n, crops=8, pngs="best", size=512)
        print(f"synthetic results: {n} facesets, {sum(1 for _ in lay.export.rglob('*.png'))} PNGs "
              f"({time.perf_counter() - t:.1f} s to write)")
        server = serve(lay.results, Path(tmp) / "decisions.yaml")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_port
        cold, body = fetch(port, "/")
        warm = statistics.median(fetch(port, "/")[0] for _ in range(5))
        pages = -(-n // PAGE)
        last, _ = fetch(port, f"/?page={pages}")
        thumbs = re.findall(r'src="(/thumb/[^"]+)"', body.decode())
        t = time.perf_counter()
        for src in thumbs:
            fetch(port, src)
        first_thumbs = time.perf_counter() - t
        t = time.perf_counter()
        for src in thumbs:
            fetch(port, src)
        cached_thumbs = time.perf_counter() - t
        sheet, _ = fetch(port, "/faceset/faceset_001")
        server.shutdown()
        server.server_close()
    print(f"people page (page 1 of {pages}, {PAGE} cards, {len(body) / 1024:.0f} KiB): cold {cold * 1000:.0f} ms, "
          f"warm median {warm * 1000:.0f} ms; last page {last * 1000:.0f} ms")
    print(f"thumbnails of one page ({len(thumbs)} crops of 512 px): first {first_thumbs:.2f} s "
          f"({first_thumbs / max(1, len(thumbs)) * 1000:.1f} ms each), cached {cached_thumbs:.2f} s")
    print(f"faceset page: {sheet * 1000:.0f} ms")
    ok = cold < 1.0 and warm < 1.0
    print(f"RESULT people page of {n} facesets opens in {max(cold, warm):.3f} s (target < 1 s): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
