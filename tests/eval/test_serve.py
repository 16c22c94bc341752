"""The local page's JSON endpoint (attngan_jax.eval.serve): valid, OOV, empty, malformed, oversized."""

import base64
import io
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from eval_fixtures import make_model_dir
from PIL import Image

from attngan_jax import model_dir
from attngan_jax.data.shapes import IXTOWORD
from attngan_jax.data.vocab import Vocabulary
from attngan_jax.eval import run as eval_run
from attngan_jax.eval import sampling, serve
from attngan_jax.visualize import to_uint8


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    d = make_model_dir(str(tmp_path_factory.mktemp("model")), Vocabulary(list(IXTOWORD)))
    srv = serve.make_server(d, port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, d
    srv.shutdown()
    srv.server_close()


def _url(srv, path):
    h, p = srv.server_address[:2]
    return f"http://{h}:{p}{path}"


def post(srv, body, raw: bytes | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(
        _url(srv, "/api/generate"), data=data, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_valid_request_gives_every_stage_and_attention(server):
    srv, d = server
    status, out = post(srv, {"caption": "a red circle on the left", "seed": 3, "num_samples": 2})
    assert status == 200, out
    spec = sampling.load_model(d).spec
    assert out["stages"] == list(spec.image_sizes) and out["seed"] == 3
    (r,) = out["results"]
    assert r["words"] == ["a", "red", "circle", "on", "the", "left"] and r["unknown"] == []
    assert len(r["samples"]) == 2
    for s in r["samples"]:
        assert [png(st["png"]).shape for st in s["stages"]] == [(z, z, 3) for z in spec.image_sizes]
        assert [a["stage"] for a in s["attention"]] == list(range(1, spec.num_stages))
        for a in s["attention"]:
            assert len(a["words"]) == 3  # top_k default
            assert {w["word"] for w in a["words"]} <= set(r["words"])
            assert png(a["words"][0]["png"]).shape == (a["size"], a["size"], 3)
    # Two samples of one caption differ (different noise items).
    a, b = (png(s["stages"][-1]["png"]) for s in r["samples"])
    assert np.abs(a.astype(int) - b.astype(int)).max() > 0


def test_same_caption_and_seed_as_generate_and_sample_mode(server, tmp_path):
    """One noise convention: the page, sampling.generate and eval.py --mode=sample agree."""
    srv, d = server
    caption = "a blue square above a yellow triangle"
    _, out = post(srv, {"caption": caption, "seed": 7, "num_samples": 3})
    g = sampling.generate(d, [caption], num_samples=3, seed=7)
    paths = eval_run.sample(d, [caption], str(tmp_path), num_samples=3, seed=7, batch_size=2)
    for j, s in enumerate(out["results"][0]["samples"]):
        for k, st in enumerate(s["stages"]):
            page = png(st["png"])
            np.testing.assert_array_equal(page, to_uint8(g["images"][k][0, j]))
            size = st["size"]
            written = [p for p in paths if p.endswith(f"0000_{j:02d}_{size}.png")]
            # --mode=sample ran batches of 2, not 3: another compiled program, whose float32
            # rounding can move a pixel by one level on some CPUs (seen on an AMD EPYC).
            diff = np.abs(page.astype(int) - np.asarray(Image.open(written[0])).astype(int))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def test_out_of_vocabulary_words_are_reported_not_dropped_silently(server):
    srv, _ = server
    status, out = post(srv, {"caption": "a red zebra circle"})
    assert status == 200
    assert out["results"][0]["unknown"] == ["zebra"]
    assert "zebra" not in out["results"][0]["words"]
    status, out = post(srv, {"caption": "zebra giraffe"})
    assert status == 400 and "none of its words is in the model's vocabulary" in out["error"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"caption": ""}, "is empty"),
        ({"caption": "   "}, "is empty"),
        ({"caption": "!!!"}, "is empty"),
        ({}, "give either 'caption'"),
        ({"caption": "a", "captions": ["a"]}, "give either 'caption'"),
        ([1, 2], "JSON object"),
        ({"caption": 5}, "must be a string"),
        ({"captions": []}, "give 1 to 8 captions"),
        ({"caption": "a red circle", "num_samples": 9}, "'num_samples' must be from 1 to 8"),
        ({"caption": "a red circle", "num_samples": "2"}, "must be an integer"),
        ({"caption": "a red circle", "seed": -1}, "'seed' must be from 0"),
        ({"caption": "a red circle", "seed": 1.5}, "must be an integer"),
        ({"caption": "a red circle", "top_k": 0}, "'top_k' must be from 1 to 10"),
        ({"caption": "a red circle", "colour": "red"}, "unknown field"),
        ({"caption": "red " * 200}, "characters"),
    ],
)
def test_bad_requests_get_400_with_a_message(server, body, message):
    srv, _ = server
    status, out = post(srv, body)
    assert status == 400, out
    assert message in out["error"], out


def test_malformed_and_oversized_bodies(server):
    srv, _ = server
    status, out = post(srv, None, raw=b"{not json")
    assert status == 400 and out["error"].startswith("not JSON")
    status, out = post(srv, None, raw=b"\xff\xfe")
    assert status == 400
    status, out = post(srv, None, raw=b"x" * (serve.MAX_BODY + 1))
    assert status == 400 and "KB of JSON" in out["error"]
    status, out = post(srv, {"caption": "a red circle"})  # the server is still up
    assert status == 200


def test_unknown_paths_and_info(server):
    srv, d = server
    with urllib.request.urlopen(_url(srv, "/api/info"), timeout=30) as r:
        info = json.loads(r.read())
    assert info["dataset"] == "shapes" and info["stages"] == list(
        sampling.load_model(d).spec.image_sizes
    )
    # The page names the model without a path of this machine (screenshots travel).
    assert info["model"] == os.path.basename(os.path.abspath(d)) and os.sep not in info["model"]
    assert serve.model_name(model_dir.SHIPPED_MODEL).startswith("the shipped shapes demo model")
    with urllib.request.urlopen(_url(srv, "/"), timeout=30) as r:
        assert b"Generate" in r.read()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(_url(srv, "/nope"), timeout=30)
    assert e.value.code == 404


def test_concurrent_requests_are_served_correctly_and_compile_once(server):
    srv, d = server
    bodies = [
        {"caption": c, "seed": s, "num_samples": 2}
        for c in ("a red circle", "a blue square")
        for s in (0, 1)
    ]
    expected = [post(srv, b)[1] for b in bodies]
    fn = sampling.sampler(sampling.load_model(d).spec)
    compiled = fn._cache_size()
    results = [None] * (3 * len(bodies))

    def worker(i):
        results[i] = post(srv, bodies[i % len(bodies)])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    for i, (status, out) in enumerate(results):
        assert status == 200
        assert out == expected[i % len(bodies)]
    assert fn._cache_size() == compiled  # the same batch shape: no new compile


def test_eval_py_serve_prints_its_address_and_serves(server):
    """``eval.py --mode=serve`` (the user's command) starts the page and prints where it is."""
    import os
    import subprocess
    import sys

    from paths import REPO

    _, d = server
    p = subprocess.Popen(
        [sys.executable, os.path.join(REPO, "eval.py"), "--mode=serve", f"--workdir={d}", "--port=0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=dict(os.environ, ATTNGAN_KEEP_MALLOC="1"),
    )  # fmt: skip
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, p.stderr.read() if p.poll() is not None else "")
        url = line.split("http://", 1)[1].split()[0]
        with urllib.request.urlopen(f"http://{url}api/info", timeout=60) as r:
            assert json.loads(r.read())["dataset"] == "shapes"
    finally:
        p.terminate()
        p.wait(timeout=30)


def _raw(srv, request: bytes, wait: float = 30.0) -> bytes:
    """Sends raw bytes, returns everything the server answers before it closes."""
    import socket

    with socket.create_connection(srv.server_address[:2], timeout=wait) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def _post_raw(srv, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    h, p = srv.server_address[:2]
    head = {"Host": f"{h}:{p}", "Content-Length": str(len(body)), **headers}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    out = _raw(srv, f"POST /api/generate HTTP/1.1\r\n{lines}\r\n".encode() + body)
    status = int(out.split(b" ", 2)[1])
    return status, json.loads(out.split(b"\r\n\r\n", 1)[1])


def test_a_burst_of_128_simultaneous_requests_is_queued_not_reset(server):
    """A notebook firing many requests at once gets an answer to each (no connection resets)."""
    srv, _ = server
    n = 128
    results: list = [None] * n
    go = threading.Barrier(n)

    def worker(i):
        go.wait()
        try:
            results[i] = post(srv, {"caption": "a red circle", "seed": i % 4, "num_samples": 1})
        except Exception as e:  # a reset lands here
            results[i] = (type(e).__name__, str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    bad = [r for r in results if r is None or r[0] != 200]
    assert not bad, f"{len(bad)} of {n} failed, e.g. {bad[:3]}"
    assert results[0][1] == results[4][1]  # same seed, same answer


def test_a_stalled_client_is_disconnected(server):
    """A client that declares a 100-byte body and sends 2 is answered 408 and let go."""
    import time

    _, d = server
    srv = serve.make_server(d, port=0, timeout=1.0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        h, p = srv.server_address[:2]
        t0 = time.monotonic()
        out = _raw(
            srv,
            f"POST /api/generate HTTP/1.1\r\nHost: {h}:{p}\r\nContent-Type: application/json\r\n"
            "Content-Length: 100\r\n\r\n{}".encode(),
        )
        assert out.startswith(b"HTTP/1.0 408"), out[:80]
        assert time.monotonic() - t0 < 20
        t0 = time.monotonic()
        assert _raw(srv, b"GET / HT") == b""  # a request line that never ends: closed, no answer
        assert time.monotonic() - t0 < 20
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize(
    "headers, status, message",
    [
        ({"Content-Type": "text/plain"}, 415, "application/json"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "application/json"),
        ({"Content-Type": "application/json", "Origin": "http://evil.example"}, 403, "evil"),
        ({"Content-Type": "application/json", "Host": "evil.example:8080"}, 403, "loopback"),
    ],
)
def test_foreign_origins_hosts_and_non_json_bodies_are_refused(server, headers, status, message):
    """A cross-origin text/plain POST, a foreign Origin and a rebound Host never generate."""
    srv, _ = server
    body = json.dumps({"caption": "a red circle"}).encode()
    got, out = _post_raw(srv, body, headers)
    assert got == status and message in out["error"], out


def test_the_pages_own_origin_and_localhost_are_accepted(server):
    srv, _ = server
    _, p = srv.server_address[:2]
    body = json.dumps({"caption": "a red circle"}).encode()
    for host in (f"localhost:{p}", f"127.0.0.1:{p}"):
        got, out = _post_raw(
            srv,
            body,
            {"Host": host, "Origin": f"http://{host}", "Content-Type": "application/json"},
        )
        assert got == 200, out
    h, _ = srv.server_address[:2]
    out = _raw(srv, f"GET /api/info HTTP/1.1\r\nHost: evil.example:{p}\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.0 403")


def test_serving_on_another_address_on_purpose_accepts_any_host(server):
    """``--host=0.0.0.0`` is deliberate: any Host is answered; the JSON and Origin rules stay."""
    _, d = server
    srv = serve.make_server(d, host="0.0.0.0", port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        p = srv.server_address[1]
        out = _raw(srv, f"GET /api/info HTTP/1.1\r\nHost: my-box.lan:{p}\r\n\r\n".encode())
        assert out.startswith(b"HTTP/1.0 200"), out[:80]
        body = json.dumps({"caption": "a red circle"}).encode()
        got, _ = _post_raw(srv, body, {"Host": f"my-box.lan:{p}", "Content-Type": "text/plain"})
        assert got == 415
    finally:
        srv.shutdown()
        srv.server_close()
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.5")
    assert serve._host_name("[::1]:8080") == "::1"
    assert serve._host_name("LocalHost:80") == "localhost"
