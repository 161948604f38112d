"""One writer at a time: an exclusive, non-blocking flock on a lock file (the OS drops it if we die)."""
from __future__ import annotations

import contextlib
import errno
import fcntl
from pathlib import Path


@contextlib.contextmanager
def exclusive(lock_file: Path, error: type[Exception], message: str):
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_file, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise error(message) from None
        raise
    try:
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
