"""The review page's server: loopback only, its own Host and Origin only, nothing served outside the results
folder, every value escaped, every click one validated write (on a synthetic results folder; the browser test
with the real pipeline is tests/test_review_browser.py)."""
from __future__ import annotations

import html
import http.client
import re
import socket
import subprocess
import sys
import threading
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from review_util import key, run_lock_held, synthetic_results

from facesets.review import decisions as D
from facesets.review.server import PAGE, serve

HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    lay = synthetic_results(root / "results", n_facesets=PAGE + 10, crops=3, hostile=HOSTILE)
    secret = root / "secret.png"
    secret.write_bytes((lay.export / "faceset_001/faces" / f"{key(1, 0)[:16]}_0.png").read_bytes())
    (lay.export / "faceset_001/faces/link.png").symlink_to(secret)  # a link out of the results folder
    server = serve(lay.results, root / "decisions.yaml")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield lay, server, root / "decisions.yaml"
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, host: str | None = None, body: dict | None = None, **headers):
    port = server.server_port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    data = urlencode(body).encode() if body is not None else b""
    if body is not None:
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(len(data)))
    for k, v in headers.items():
        conn.putheader(k.replace("_", "-"), v)
    conn.endheaders(data)
    resp = conn.getresponse()
    out = resp.status, dict(resp.getheaders()), resp.read()
    conn.close()
    return out


def own(server) -> str:
    return f"http://127.0.0.1:{server.server_port}"


def test_binds_to_loopback_only(site):
    _, server, _ = site
    assert server.server_address[0] == "127.0.0.1"
    others = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for addr in others:  # the machine's other addresses do not reach it
        with pytest.raises(OSError):
            socket.create_connection((addr, server.server_port), timeout=2).close()


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1:1", "attacker.com:{port}",
                                  "127.0.0.1.nip.io:{port}", ""])
def test_a_request_for_another_host_is_refused(site, host):
    _, server, _ = site
    status, _, body = request(server, "GET", "/", host=host.format(port=server.server_port))
    assert status == 421 and b"refused" in body and b"faceset_001" not in body
    assert request(server, "GET", "/", host=f"localhost:{server.server_port}")[0] == 200


def test_a_cross_site_post_is_refused_and_writes_nothing(site):
    _, server, path = site
    form = {"action": "name", "faceset": "faceset_002", "name": "mallory", "back": "/"}
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {},
                    {"Referer": "http://evil.example/page"}, {"Origin": own(server), "Sec-Fetch-Site": "cross-site"},
                    {"Origin": f"http://127.0.0.1:{server.server_port + 1}"}):
        status, _, _ = request(server, "POST", "/decide", body=form, **headers)
        assert status == 403, headers
    assert "mallory" not in (path.read_text() if path.exists() else "")
    status, hdrs, _ = request(server, "POST", "/decide", body=form, Referer=f"{own(server)}/faceset/faceset_002")
    assert status == 303 and D.load(path)["names"]["faceset_002"] == "mallory"
    request(server, "POST", "/decide", body=dict(form, name=""), Origin=own(server))
    assert "faceset_002" not in D.load(path)["names"]


@pytest.mark.parametrize("path", ["/thumb/../../secret.png", "/thumb/%2e%2e/%2e%2e/secret.png", "/thumb/..%2f..%2fsecret.png",
                                  "/thumb//etc/passwd", "/thumb/faceset_001/faces/link.png", "/thumb/manifest.json",
                                  "/thumb/faceset_001/manifest.json", "/face/../../etc/passwd", "/face/abc:0",
                                  "/../../etc/passwd", "/faceset/../../etc/passwd", "/faceset/faceset_999",
                                  "/static/../secret.png", "/decisions.yaml"])
def test_nothing_outside_the_results_folder_is_served(site, path):
    _, server, _ = site
    status, _, body = request(server, "GET", path)
    assert status == 404, (path, status)
    assert not body.startswith(b"\x89PNG") and b"root:" not in body


def test_thumbnails_are_made_once_and_follow_the_crop_bytes(site):
    lay, server, _ = site
    rel = f"faceset_002/faces/{key(2, 0)[:16]}_0.png"
    status, hdrs, jpg = request(server, "GET", f"/thumb/{rel}")
    assert status == 200 and hdrs["Content-Type"] == "image/jpeg" and jpg[:2] == b"\xff\xd8"
    made = sorted((lay.review / "thumbs").rglob("*.jpg"))
    assert request(server, "GET", f"/thumb/{rel}")[2] == jpg and sorted((lay.review / "thumbs").rglob("*.jpg")) == made
    import cv2
    import numpy as np

    cv2.imwrite(str(lay.export / rel), np.zeros((64, 64, 3), np.uint8))  # the export rendered it anew
    again = request(server, "GET", f"/thumb/{rel}")[2]
    assert again != jpg and len(sorted((lay.review / "thumbs").rglob("*.jpg"))) == len(made) + 1


def test_the_people_page_is_paged_and_puts_the_unnamed_first(site):
    _, server, _ = site
    status, hdrs, body = request(server, "GET", "/")
    text = body.decode()
    assert status == 200 and "script-src" not in hdrs["Content-Security-Policy"]
    cards = re.findall(r'class="card person" data-faceset="(faceset_\d+)"', text)
    assert len(cards) == PAGE and cards[0] == "faceset_001"
    second = re.findall(r'class="card person" data-faceset="(faceset_\d+)"', request(server, "GET", "/?page=2")[2].decode())
    order = cards + second
    assert len(order) == PAGE + 10 and order[-1] == "faceset_130"
    named = [f for f in order if int(f[-3:]) % 5 == 0]
    assert order[-len(named):] == named  # the people not named yet first, then the named, each the largest first
    assert ">person 5</a>" in text and '<span class="status masked">masked</span>' in text
    assert '<span class="status merged">merged</span> into faceset_001' in text


def test_every_value_is_escaped_and_no_page_has_a_script(site):
    _, server, _ = site
    for path in ("/", "/pending", "/faceset/faceset_001"):
        text = request(server, "GET", path)[2].decode()
        assert "<script" not in text, path
    pending = request(server, "GET", "/pending")[2].decode()
    assert html.escape(HOSTILE, quote=False) in pending or "\\u003cscript\\u003e" in pending
    assert "near-duplicate of faceset_001" in pending and "same identity" in pending
    sheet = request(server, "GET", "/faceset/faceset_001")[2].decode()
    assert f"face_short 50 &lt; 100{html.escape(HOSTILE)}" in sheet


def test_a_click_writes_one_validated_decision_and_says_how_to_apply_it(site):
    _, server, path = site
    k = key(1, 1)
    status, hdrs, _ = request(server, "POST", "/decide", Origin=own(server),
                              body={"action": "remove", "faceset": "faceset_001", "key": k, "back": "/faceset/faceset_001"})
    assert status == 303 and urlsplit(hdrs["Location"]).path == "/faceset/faceset_001"
    assert "remove faceset_001" in parse_qs(urlsplit(hdrs["Location"]).query)["done"][0]
    assert D.load(path)["remove"] == {"faceset_001": [k]}
    page = request(server, "GET", hdrs["Location"])[2].decode()
    assert "snakemake --cores all" in page and "removed (pending)" in page and "Decisions not applied yet" in page
    for bad in ({"action": "name", "faceset": "faceset_001", "name": "../../x"},
                {"action": "remove", "faceset": "../x", "key": k}, {"action": "keep", "key": "nokey"},
                {"action": "rm -rf", "faceset": "faceset_001"}, {"action": "name", "faceset": "faceset_001", "name": HOSTILE}):
        status, hdrs, _ = request(server, "POST", "/decide", Origin=own(server), body=dict(bad, back="//evil.example/"))
        assert status == 303 and hdrs["Location"].startswith("/?error="), bad  # never an open redirect
    assert D.load(path)["names"].get("faceset_001") is None
    request(server, "POST", "/decide", Origin=own(server), body={"action": "unremove", "faceset": "faceset_001", "key": k})
    assert D.load(path)["remove"] == {}


def test_a_click_while_the_pipeline_runs_is_refused_with_the_reason(site):
    lay, server, path = site
    with run_lock_held(lay) as holder:
        status, hdrs, _ = request(server, "POST", "/decide", Origin=own(server),
                                  body={"action": "hide", "faceset": "faceset_004", "back": "/"})
        error = parse_qs(urlsplit(hdrs["Location"]).query)["error"][0]
        assert "a pipeline run holds" in error and f"pid {holder.pid}" in error
        assert "faceset_004" not in D.load(path)["hide"]


def test_the_review_command_prints_its_loopback_url(tmp_path):
    lay = synthetic_results(tmp_path / "results", n_facesets=2)
    proc = subprocess.Popen([sys.executable, "-m", "facesets", "review", str(lay.results), "--decisions",
                             str(tmp_path / "d.yaml")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        m = re.match(r"review page: http://127\.0\.0\.1:(\d+)/ ", line)
        assert m, line + proc.stderr.read() if proc.poll() is not None else line
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
