"""A real OpenAI-compatible embeddings server on 127.0.0.1 for the semantic-backend tests.

Usage::

    with EmbedServer(synonyms=[["probe", "investigation"]]) as server:
        server.base_url                    # http://127.0.0.1:PORT/v1
        server.script("http_500")          # the next request fails, then ``mode`` again
        len(server.requests)               # request bodies received

Vectors: each word of a text (lower-cased, a few stop words dropped) counts for its concept
(synonyms share one), hashed into ``DIMS`` dimensions; so synonym headlines get the same
vector and unrelated ones nearly orthogonal ones, as a real model would put them. Modes:
``good``, ``http_500``, ``slow`` (answers after ``delay`` seconds), ``bad_body`` (not JSON),
``short`` (one vector fewer than asked).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DIMS = 1024
_WORD = re.compile(r"\w+")
_STOP = frozenset({"a", "an", "the", "of", "in", "on", "at", "to", "for", "into", "by", "and"})


class EmbedServer:
    """See the module docstring."""

    def __init__(self, synonyms: list[list[str]] | None = None) -> None:
        self.concepts = {w: group[0] for group in synonyms or [] for w in group}
        self.mode = "good"
        self.delay = 2.0
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self._script: deque[str] = deque()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.block_on_close = False  # a "slow" answer must not hold up the test's end
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *modes: str) -> None:
        """Answer the next requests in these modes, then ``mode`` again."""
        self._script.extend(modes)

    def vector(self, text: str) -> list[float]:
        """The vector this server gives ``text``."""
        out = [0.0] * DIMS
        for word in _WORD.findall(text.casefold()):
            if word in _STOP:
                continue
            concept = self.concepts.get(word, word)
            digest = hashlib.blake2b(concept.encode(), digest_size=8).digest()
            out[int.from_bytes(digest, "big") % DIMS] += 1.0
        return out

    def __enter__(self) -> EmbedServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        body = json.loads(h.rfile.read(int(h.headers.get("Content-Length", "0"))))
        self.requests.append(body)
        self.headers.append(dict(h.headers))
        mode = self._script.popleft() if self._script else self.mode
        if h.path != "/v1/embeddings":
            self._send(h, 404, b"{}")
        elif mode == "http_500":
            self._send(h, 500, b'{"error": "model crashed"}')
        elif mode == "bad_body":
            self._send(h, 200, b"<html>not json</html>")
        else:
            if mode == "slow":
                time.sleep(self.delay)
            texts = body["input"]
            rows = [
                {"object": "embedding", "index": i, "embedding": self.vector(t)}
                for i, t in enumerate(texts)
            ]
            if mode == "short":
                rows = rows[:-1]
            answer = {"object": "list", "model": body["model"], "data": rows[::-1]}
            self._send(h, 200, json.dumps(answer).encode())

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass
