"""`facesets review`: a local page that shows a results folder and writes the person's decisions.

It binds to 127.0.0.1 only, on a free port, and is built to be safe to leave running:
- a request whose Host is not this server's own (127.0.0.1:PORT or localhost:PORT) is refused, so a web page
  cannot reach it through DNS rebinding; a POST must also come from this server's own pages (Origin, or
  Referer where a browser sends no Origin), so no other site can make a click for the person;
- it serves only its own pages and thumbnails: an exported crop by its path under the export folder (resolved,
  links followed, and refused outside it) and a face by its key through the face cache; nothing else on disk;
- every value shown is escaped (Jinja2 autoescape; there is no script at all, every button is a form), and
  the Content-Security-Policy allows no script, no plugin and no framing;
- every write is one validated change to the decisions file (facesets.review.editing), refused while a
  pipeline run holds the results folder.
"""
from __future__ import annotations

import logging
import re
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import jinja2

from facesets import __version__
from facesets.core.errors import FacesetsError
from facesets.core.layout import Layout
from facesets.review import decisions as fsdecisions
from facesets.review import people
from facesets.review.editing import ACTIONS, Editor
from facesets.review.similar import Similar
from facesets.review.thumbs import Thumbs

log = logging.getLogger(__name__)
PAGE = 120  # cards per page
FACESET = re.compile(r"^faceset_[0-9]+(?:_[0-9A-Za-z-]+)*$")
KEY = re.compile(r"^[0-9a-f]{64}:[0-9]+$")
MAX_BODY = 64 << 10
CSP = ("default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("facesets.review", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["url"] = lambda v: quote(str(v), safe="/:", errors="surrogateescape")
    env.globals["version"] = __version__
    return env


class Refused(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status


class App:
    """The pages and the one action endpoint; the HTTP handler below only moves bytes."""

    def __init__(self, results: str | Path, decisions_path: str | Path, apply_command: str, port: int):
        self.layout = Layout(results)
        self.decisions_path = Path(decisions_path)
        self.apply_command, self.port = apply_command, port
        self.similar = Similar(self.layout)
        self.thumbs = Thumbs(self.layout, self.similar)
        self.editor = Editor(self.decisions_path, self.layout.results, self.similar.anchor_keys)
        self.origins = {f"http://127.0.0.1:{port}", f"http://localhost:{port}"}

    # ---------------------------------------------------------------- security
    def check(self, method: str, headers) -> None:
        host = headers.get("Host", "")
        if f"http://{host}" not in self.origins:
            raise Refused(421, f"refused: Host {host!r} is not this review server's own")
        if method != "POST":
            return
        origin = headers.get("Origin")
        if origin is None:  # some browsers send none on same-origin forms: then the Referer must be ours
            ref = urlsplit(headers.get("Referer", ""))
            origin = f"{ref.scheme}://{ref.netloc}" if ref.netloc else None
        if origin not in self.origins:
            raise Refused(403, f"refused: a change must come from this review page, not {origin or 'an unknown page'}")
        if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise Refused(403, "refused: a cross-site request")

    # ---------------------------------------------------------------- pages
    def decisions(self) -> tuple[dict, str | None]:
        try:
            return fsdecisions.load(self.decisions_path), None
        except FacesetsError as exc:
            return fsdecisions.empty(), str(exc)

    def _common(self, query: dict, d_error: str | None) -> dict:
        applied = self.layout.applied
        newer = self.decisions_path.is_file() and (
            not applied.is_file() or self.decisions_path.stat().st_mtime_ns > applied.stat().st_mtime_ns)
        return {"decisions_path": str(self.decisions_path.resolve()), "apply_command": self.apply_command,
                "not_applied": newer, "done": query.get("done", [""])[0], "error": query.get("error", [""])[0],
                "file_error": d_error}

    def render(self, template: str, query: dict, **context) -> bytes:
        d_error = context.pop("d_error", None)
        return environment().get_template(template).render(**self._common(query, d_error), **context).encode()

    def people_page(self, query: dict) -> bytes:
        d, err = self.decisions()
        everyone = people.people(self.layout, d)
        page, pages, shown = _paged(everyone, query)
        counts = {s: sum(p.status == s for p in everyone) for s in people.STATUSES}
        return self.render("people.html", query, d_error=err, title="People", people=shown, page=page, pages=pages,
                           total=len(everyone), counts=counts, unnamed=sum(p.name is None for p in everyone))

    def faceset_page(self, name: str, query: dict) -> bytes | None:
        d, err = self.decisions()
        fs = people.faceset(self.layout, name, d)
        if fs is None:
            return None
        everyone = {p.faceset: p for p in people.people(self.layout, d)}
        page, pages, crops = _paged(fs["crops"], query)
        similar = [{"person": everyone[n], "similarity": s} for n, s in self.similar.facesets(name) if n in everyone]
        faces = self.similar.faces(name)
        assigned = {k for k, f in d["assign"].items() if f == name}
        for f in faces:
            f["assigned"] = f["key"] in assigned
        return self.render("faceset.html", query, d_error=err, title=fs["name"] or name, fs=fs, crops=crops,
                           page=page, pages=pages, person=everyone.get(name), similar=similar, faces=faces,
                           others=sorted(n for n in everyone if n != name), here=f"/faceset/{name}")

    def pending_page(self, query: dict) -> bytes:
        d, err = self.decisions()
        plans = people.pending(self.layout, d)
        page, pages, shown = _paged([(i, it) for i, p in enumerate(plans) for it in p["items"]], query)
        for i, p in enumerate(plans):  # this page's items, still grouped by pass
            p["items"] = [it for j, it in shown if j == i]
        best = {p.faceset: p.best for p in people.people(self.layout, d)}
        return self.render("pending.html", query, d_error=err, title="Pending changes", plans=plans, best=best,
                           page=page, pages=pages, unapplied=people.unapplied(self.layout))

    # ---------------------------------------------------------------- the one write
    def decide(self, form: dict[str, str]) -> str:
        """Apply one decision from a form; returns where to go back to (with what happened)."""
        back = form.get("back", "/")
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        action = form.get("action", "")
        sep = "&" if "?" in back else "?"
        if action not in ACTIONS:
            return f"{back}{sep}{urlencode({'error': f'unknown action {action!r}'})}"
        args = {k: form.get(k, "") for k in ACTIONS[action]}
        bad = [k for k, v in args.items() if (k in ("faceset", "into", "other") and not FACESET.match(v))
               or (k == "key" and not KEY.match(v))]
        if bad:
            return f"{back}{sep}{urlencode({'error': f'{action}: not a valid {bad[0]}'})}"
        try:
            self.editor.change(action, **args)
        except FacesetsError as exc:
            return f"{back}{sep}{urlencode({'error': exc.one_line()})}"
        what = " ".join(f"{v}" for v in args.values())
        return f"{back}{sep}{urlencode({'done': f'{action} {what}: written to {self.decisions_path.name}'})}"


def _paged(items: list, query: dict) -> tuple[int, int, list]:
    pages = max(1, -(-len(items) // PAGE))
    try:
        page = min(max(1, int(query.get("page", ["1"])[0])), pages)
    except ValueError:
        page = 1
    return page, pages, items[(page - 1) * PAGE: page * PAGE]


class Handler(BaseHTTPRequestHandler):
    server_version = "facesets-review"
    app: App

    def log_message(self, fmt, *args) -> None:  # the terminal shows the URL, not every request
        log.debug("review: " + fmt, *args)

    def _send(self, status: int, body: bytes, ctype: str = "text/html; charset=utf-8", extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store" if ctype.startswith("text/") else "max-age=3600")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _guard(self) -> bool:
        try:
            self.server.app.check(self.command, self.headers)
        except Refused as exc:
            self._send(exc.status, f"{exc}\n".encode(), "text/plain; charset=utf-8")
            return False
        return True

    def do_GET(self) -> None:
        if not self._guard():
            return
        app, url = self.server.app, urlsplit(self.path)
        query = parse_qs(url.query)
        path = url.path
        try:
            if path == "/":
                return self._send(200, app.people_page(query))
            if path == "/pending":
                return self._send(200, app.pending_page(query))
            if path.startswith("/faceset/") and FACESET.match(path[9:]):
                body = app.faceset_page(path[9:], query)
                return self._send(200, body) if body is not None else self._missing()
            if path.startswith(("/thumb/", "/face/")):
                return self._image(path)
        except Exception:  # noqa: BLE001 -- one broken page must not stop the server
            log.exception("review page %s failed", path)
            return self._send(500, b"this page failed; the traceback is in the log\n", "text/plain; charset=utf-8")
        self._missing()

    do_HEAD = do_GET

    def _image(self, path: str) -> None:
        from urllib.parse import unquote

        app = self.server.app
        if path.startswith("/thumb/"):
            thumb = app.thumbs.crop(unquote(path[7:], errors="surrogateescape"))
        else:
            key = unquote(path[6:])
            thumb = app.thumbs.face(key) if KEY.match(key) else None
        if thumb is None:
            return self._missing()
        self._send(200, thumb.read_bytes(), "image/jpeg")

    def _missing(self) -> None:
        self._send(404, b"not found\n", "text/plain; charset=utf-8")

    def do_POST(self) -> None:
        if not self._guard():
            return
        if urlsplit(self.path).path != "/decide":
            return self._missing()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return self._send(413, b"too large\n", "text/plain; charset=utf-8")
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(n).decode("utf-8", "replace")).items()}
        self._send(303, b"", extra={"Location": self.server.app.decide(form)})


class ReviewServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, results, decisions_path, port: int = 0, apply_command: str = "snakemake --cores all"):
        super().__init__(("127.0.0.1", port), Handler)  # loopback only, whatever the caller asks
        self.app = App(results, decisions_path, apply_command, self.server_port)


def serve(results, decisions_path, port: int = 0, apply_command: str = "snakemake --cores all") -> ReviewServer:
    """A review server bound to 127.0.0.1 (a free port unless `port` is given); call serve_forever() on it."""
    return ReviewServer(results, decisions_path, port, apply_command)
