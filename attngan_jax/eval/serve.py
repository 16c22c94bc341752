r"""A local web page that turns captions into every stage's image and its attention maps.

    python eval.py --mode=serve [--workdir=runs/shapes] [--port=8080]
    python -m attngan_jax.eval.serve [--workdir=...] [--port=...]

Without ``--workdir`` it serves the shapes model that ships with the package
(:data:`attngan_jax.model_dir.SHIPPED_MODEL`). The page (``GET /``) has a caption box, a seed, the
number of samples and a Generate button; it calls the JSON endpoint below and shows every stage's image (upscaled with
nearest neighbour, so pixels stay visible) and, per attending stage, the most attended words with
their maps over that stage's image.

JSON endpoint (for notebooks and other clients)::

    POST /api/generate   {"caption": "a red circle on the left", "seed": 0, "num_samples": 2}
                         ("captions": [...] for several, at most 8; "top_k": words per stage, 1-10)
    -> 200 {"seed": 0, "num_samples": 2, "stages": [16, 32],
            "results": [{"caption": ..., "words": [...used], "unknown": [...dropped],
                         "samples": [{"stages": [{"size": 16, "png": BASE64}, ...],
                                      "attention": [{"stage": 1, "size": 32,
                                                     "words": [{"index": 3, "word": "red",
                                                                "png": BASE64}, ...]}]}]}]}
    -> 400 {"error": "..."}   bad JSON, an empty caption, no known word, out-of-range numbers,
                              a body over 64 KB
    -> 403 {"error": "..."}   a ``Host`` that is not this machine's loopback name (DNS
                              rebinding), or an ``Origin`` other than the page's own
    -> 408                    a body that does not arrive within ``timeout`` seconds
    -> 415 {"error": "..."}   a body not sent as ``Content-Type: application/json``
    GET /api/info        -> {"model", "model_dir", "dataset", "stages", "vocab_size", "words_num",
                             "examples"}

Images are the same as ``eval.py --mode=sample`` and :func:`attngan_jax.eval.sampling.generate`
give for the same caption and seed (sample ``j`` of caption ``i``: noise item
``i * num_samples + j``).

Web stack: the standard library's ``http.server`` (``ThreadingHTTPServer``) and one static page
with plain JavaScript, so the base install needs nothing more and nothing is fetched from the
internet. Requests are served in threads; generation runs one request at a time behind a lock
(the jitted sampler is compiled once per batch shape and reused by later requests), so a burst
of requests queues instead of being refused: the listen backlog holds 1,024 connections.

Safety (the rules Jupyter's server follows): served on a loopback address (the default), a request
is answered only when its ``Host`` header names the loopback (``localhost``, ``127.0.0.1``,
``[::1]``), so a foreign site that rebinds its DNS name to 127.0.0.1 is refused. The generate
endpoint takes only ``application/json`` bodies (a cross-origin page cannot send those without a
CORS preflight, which this server never grants) and refuses an ``Origin`` header other than the
page's own. A client that stalls while sending its request is disconnected after ``timeout``
seconds (10 by default). Serving on another address (``--host=0.0.0.0``) is a deliberate choice:
then any ``Host`` is accepted, the JSON and origin rules stay.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import threading
from collections.abc import Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

from attngan_jax import model_dir
from attngan_jax.errors import InputError
from attngan_jax.eval import sampling
from attngan_jax.visualize import attention_tiles, to_uint8

log = logging.getLogger(__name__)

PAGE = os.path.join(os.path.dirname(__file__), "page", "index.html")
MAX_BODY = 64 * 1024
MAX_CAPTIONS = 8
MAX_SAMPLES = 8
MAX_CAPTION_CHARS = 500
MAX_SEED = 2**31 - 1
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
READ_TIMEOUT_S = 10.0


class BadRequest(InputError):
    """A request the endpoint answers with HTTP 400 (the message is shown to the user)."""


def png_base64(image: np.ndarray) -> str:
    """A uint8 image as a base64 PNG string."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _int(req: dict, key: str, default: int, low: int, high: int) -> int:
    v = req.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise BadRequest(f"{key!r} must be an integer from {low} to {high}, not {v!r}")
    if not low <= v <= high:
        raise BadRequest(f"{key!r} must be from {low} to {high}, not {v}")
    return v


def parse_request(req: Any) -> tuple[list[str], int, int, int]:
    """``(captions, seed, num_samples, top_k)`` of a request body, checked.

    Raises:
        BadRequest: a field is missing, of the wrong type or out of range (named in the message).
    """
    if not isinstance(req, dict):
        raise BadRequest('the request body must be a JSON object, e.g. {"caption": "a red bird"}')
    unknown = sorted(set(req) - {"caption", "captions", "seed", "num_samples", "top_k"})
    if unknown:
        raise BadRequest(f"unknown field(s) {unknown}: use caption(s), seed, num_samples, top_k")
    if ("caption" in req) == ("captions" in req):
        raise BadRequest("give either 'caption' (a string) or 'captions' (a list of strings)")
    captions = [req["caption"]] if "caption" in req else req["captions"]
    if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
        raise BadRequest("'caption' must be a string and 'captions' a list of strings")
    if not 1 <= len(captions) <= MAX_CAPTIONS:
        raise BadRequest(f"give 1 to {MAX_CAPTIONS} captions, not {len(captions)}")
    for i, c in enumerate(captions):
        if not c.strip():
            raise BadRequest(f"caption {i} is empty: type a sentence such as 'a red circle'")
        if len(c) > MAX_CAPTION_CHARS:
            raise BadRequest(f"caption {i} has {len(c)} characters (at most {MAX_CAPTION_CHARS})")
    seed = _int(req, "seed", 0, 0, MAX_SEED)
    num_samples = _int(req, "num_samples", 1, 1, MAX_SAMPLES)
    top_k = _int(req, "top_k", 3, 1, 10)
    return captions, seed, num_samples, top_k


def model_name(directory: str) -> str:
    """What the page calls a model: the shipped one by its provenance, others by their run's name.

    A path would name the machine's folders in screenshots; the run's name (``runs/shapes`` for
    ``runs/shapes/attngan``) is what a user typed.
    """
    prov = os.path.join(directory, "provenance.json")
    if os.path.exists(prov):
        with open(prov) as f:
            p = json.load(f)
        return f"the shipped shapes demo model (commit {str(p.get('commit', '?'))[:7]})"
    path = os.path.abspath(directory)
    if os.path.basename(path) in ("attngan", "damsm"):
        path = os.path.dirname(path)
    return os.path.basename(path)


class ServedModel:
    """A loaded model directory and what the endpoint does with it (thread-safe).

    Not a network: the generator network is :class:`attngan_jax.models.generator.Generator`.
    """

    def __init__(self, directory: str):
        self.directory = model_dir.resolve(directory)
        self.model = sampling.load_model(self.directory)
        self._lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """What the page shows about the model."""
        spec = self.model.spec
        return {
            "model": model_name(self.directory),
            "model_dir": os.path.abspath(self.directory),
            "dataset": spec.dataset,
            "stages": list(spec.image_sizes),
            "vocab_size": spec.vocab_size,
            "words_num": spec.words_num,
            "examples": _examples(spec.dataset),
        }

    def generate(self, req: Any) -> dict[str, Any]:
        """The endpoint's answer to a request body (see the module docstring).

        Raises:
            BadRequest: the request is malformed; InputError: no caption word is known.
        """
        captions, seed, num_samples, top_k = parse_request(req)
        with self._lock:
            out = sampling.generate(self.model, captions, num_samples=num_samples, seed=seed)
        results = []
        for i, caption in enumerate(captions):
            samples = [
                _sample(out["images"], out["attention"], i, j, out["words"][i], top_k)
                for j in range(num_samples)
            ]
            results.append(
                {"caption": caption, "words": out["words"][i], "unknown": out["unknown"][i],
                 "samples": samples}
            )  # fmt: skip
        return {
            "seed": seed,
            "num_samples": num_samples,
            "stages": list(self.model.spec.image_sizes),
            "results": results,
        }


def _sample(images, attention, i: int, j: int, words: list[str], top_k: int) -> dict:
    stages = [to_uint8(x[i, j]) for x in images]  # per stage (S, S, 3) uint8
    att = []
    for a, amap in enumerate(attention):  # map a belongs to stage a + 1
        tiles = attention_tiles(stages[a + 1], amap[i, j], len(words), top_k)
        att.append(
            {"stage": a + 1, "size": int(stages[a + 1].shape[0]),
             "words": [{"index": t, "word": words[t], "png": png_base64(tile)} for t, tile in tiles]}
        )  # fmt: skip
    return {
        "stages": [{"size": int(s.shape[0]), "png": png_base64(s)} for s in stages],
        "attention": att,
    }


def _examples(dataset: str) -> list[str]:
    if dataset == "shapes":
        return [
            "a red circle on the left",
            "a blue square above a yellow triangle",
            "a small green triangle at the bottom",
        ]
    if dataset == "birds":
        return ["this bird is red with white and has a very short beak"]
    return []


def _host_name(host_header: str) -> str:
    """``Host`` header -> host name without port: ``"[::1]:80"`` -> ``"::1"``."""
    h = host_header.strip().lower()
    if h.startswith("["):  # [IPv6]:port
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


def is_loopback(host: str) -> bool:
    """Whether a bind address or host name is this machine's loopback."""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def make_handler(
    gen: ServedModel,
    page: str = PAGE,
    check_host: bool = True,
    timeout: float = READ_TIMEOUT_S,
) -> type[BaseHTTPRequestHandler]:
    """The request handler class of a server for ``gen``.

    Args:
        gen: the loaded model.
        page: the HTML page served at ``/``.
        check_host: answer only requests whose ``Host`` is the loopback (see the module docstring).
        timeout: seconds a client may stall while sending its request before it is disconnected.
    """
    with open(page, "rb") as f:
        html = f.read()

    class Handler(BaseHTTPRequestHandler):
        server_version = "attngan-jax"

        def setup(self):
            self.timeout = timeout  # socket timeout for every read and write of this connection
            super().setup()

        def _refused(self) -> bool:
            """Answers 403 (and returns True) for a foreign ``Host`` or ``Origin``."""
            host = self.headers.get("Host", "")
            if check_host and not is_loopback(_host_name(host)):
                self._json(
                    HTTPStatus.FORBIDDEN,
                    {"error": f"Host {host!r} is not this machine's loopback address; open the "
                              "page at http://localhost:PORT/ (or serve with --host=... on purpose)"},
                )  # fmt: skip
                return True
            origin = self.headers.get("Origin")
            if origin is not None and origin.lower() != f"http://{host.lower()}":
                self._json(
                    HTTPStatus.FORBIDDEN,
                    {"error": f"requests from {origin!r} are not accepted; use the page itself"},
                )
                return True
            return False

        def _send(self, status: int, body: bytes, ctype: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self):  # noqa: N802  (http.server's name)
            if self._refused():
                return
            path = self.path.split("?", 1)[0]
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, html, "text/html; charset=utf-8")
            elif path == "/api/info":
                self._json(HTTPStatus.OK, gen.info())
            elif path == "/favicon.ico":
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {path}"})

        def do_POST(self):  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/generate":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"})
                return
            if self._refused():
                return
            ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                self._json(
                    HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                    {"error": f"send the body as Content-Type: application/json, not {ctype!r}"},
                )
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._json(
                    HTTPStatus.BAD_REQUEST,
                    {"error": f"the request body must be 1 byte to {MAX_BODY // 1024} KB of JSON"},
                )
                self.close_connection = True  # the unread body must not be parsed as a request
                return
            try:
                body = self.rfile.read(length)
            except TimeoutError:
                self._json(HTTPStatus.REQUEST_TIMEOUT, {"error": f"no body within {timeout:g} s"})
                return
            if len(body) < length:  # the client closed its side early
                return
            try:
                req = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"not JSON: {e}"})
                return
            try:
                self._json(HTTPStatus.OK, gen.generate(req))
            except InputError as e:  # BadRequest, or a caption without any known word
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
            except Exception as e:  # a request never takes the server down
                log.exception("request failed")
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})

        def log_message(self, fmt, *args):  # through logging, not stderr lines per request
            log.info("%s %s", self.address_string(), fmt % args)

    return Handler


class PageServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a deep listen backlog: bursts wait in line, not reset."""

    daemon_threads = True
    request_queue_size = 1024


def make_server(
    directory: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    timeout: float = READ_TIMEOUT_S,
):
    """A :class:`PageServer` for a model directory (default: the shipped shapes model).

    ``port=0`` picks a free port (``server.server_address`` says which). On a loopback ``host``
    only loopback ``Host`` headers are answered; ``timeout``: seconds a stalled client is kept.
    """
    gen = ServedModel(directory or model_dir.SHIPPED_MODEL)
    handler = make_handler(gen, check_host=is_loopback(host), timeout=timeout)
    server = PageServer((host, port), handler)
    server.model = gen
    return server


def serve(directory: str | None = None, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Starts the page, prints its address and serves until interrupted (Ctrl-C)."""
    server = make_server(directory, host, port)
    h, p = server.server_address[:2]
    print(
        f"attngan-jax page for {server.model.directory}: http://{h}:{p}/  (Ctrl-C stops)",
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m attngan_jax.eval.serve [--workdir=DIR] [--host=H] [--port=P]``."""
    import argparse

    from attngan_jax import cli
    from attngan_jax.runtime import xla_flags

    xla_flags.apply()  # XLA:CPU flags, before JAX starts its backend
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default=None, help="model directory (default: the shipped model)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    a = ap.parse_args(argv)
    with cli.report_input_errors():
        serve(a.workdir, a.host, a.port)


if __name__ == "__main__":
    main()
