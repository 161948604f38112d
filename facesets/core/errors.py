"""The errors a user can act on. Each carries a one-line message (facesets.core.messages): what failed and
what to do. The CLI prints that line alone (`facesets: <message>`); the traceback goes to the --log file,
and to the terminal only with -v. Any other exception is a bug or an environment failure and is reported
as such."""
from __future__ import annotations


class FacesetsError(Exception):
    """Base class: a failure the user can fix; str() is the one-line message."""

    exit_code = 2

    def one_line(self) -> str:
        """The message on one line (a multi-line message, e.g. several config keys, joined with '; ')."""
        parts = [p.strip() for p in str(self).splitlines() if p.strip()]
        out = parts[0] if parts else type(self).__name__
        for p in parts[1:]:
            out += (" " if out.endswith(":") else "; ") + p
        return out


class ConfigError(FacesetsError, ValueError):
    """A config value is wrong; the message names the key."""


class InputError(FacesetsError):
    """A required input is missing, unreadable or malformed (a path, an option, a JSON file)."""


class ModelPackError(FacesetsError):
    """The model pack cannot be used: folder missing, incomplete, or a named pack not installed."""

    exit_code = 1


class Locked(FacesetsError, RuntimeError):
    """Another facesets process holds what this one would write (store, corpus, results folder)."""

    exit_code = 3


class WorkerError(FacesetsError):
    """The stand-alone face worker (workers.python) could not start, or died part way (its partial results
    are kept: a re-run resumes)."""

    exit_code = 1
