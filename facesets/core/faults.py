"""Fault injection for the reliability tests: kill -9 or a full disk at a chosen write.

Set FACESETS_FAULT to `kill:N` (SIGKILL at the N-th checkpoint) or `enospc:N` (raise ENOSPC there);
FACESETS_FAULT_TRACE to a file to append every checkpoint's name (to count them). Unset, a checkpoint
costs one dictionary lookup.
"""
from __future__ import annotations

import errno
import os
import signal

_count = 0


def checkpoint(name: str) -> None:
    spec = os.environ.get("FACESETS_FAULT")
    trace = os.environ.get("FACESETS_FAULT_TRACE")
    if not spec and not trace:
        return
    global _count
    _count += 1
    if trace:
        with open(trace, "a", encoding="utf-8") as fh:
            fh.write(f"{_count}\t{name}\n")
    if spec:
        kind, _, n = spec.partition(":")
        if _count == int(n):
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif kind == "enospc":
                raise OSError(errno.ENOSPC, "No space left on device (injected)", name)
