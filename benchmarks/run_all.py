#!/usr/bin/env python
"""Run every benchmark in this folder, one after the other, each printing its side-by-side ratios.

    python benchmarks/run_all.py [--quick]
"""
import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "embed": (["bench_embed.py"], ["bench_embed.py", "--quick"]),
    "cluster": (["bench_cluster.py"], ["bench_cluster.py", "--sizes", "10000"]),
    "dag": (["bench_dag.py"], ["bench_dag.py", "--quick"]),
    "e2e": (["bench_e2e.py"], ["bench_e2e.py", "--quick"]),
    "export_curation": (["bench_export_curation.py"], ["bench_export_curation.py", "--quick"]),
    "review": (["bench_review.py"], ["bench_review.py", "--quick"]),
    "worker": (["bench_worker.py"], ["bench_worker.py", "--quick"]),
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every benchmark")
    args = ap.parse_args()
    failed, missed = [], []
    for name, (full, quick) in BENCHES.items():
        argv = quick if args.quick else full
        print(f"\n===== {name}: {' '.join(argv)}", flush=True)
        # the scripts exit 0 when a target is missed (the figures are still the point): read their verdicts
        proc = subprocess.Popen([sys.executable, str(HERE / argv[0]), *argv[1:]], stdout=subprocess.PIPE,
                                text=True, bufsize=1)
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("RESULT") and ("NOT met" in line or "FAIL" in line):
                missed.append(f"{name}: {line.split(' --')[0].strip()}")
        if proc.wait():
            failed.append(name)
    print(f"\nbenchmarks run: {len(BENCHES)}; failed: {failed or 'none'}")
    print("targets not met:" + ("".join(f"\n  {m}" for m in missed) if missed else " none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
