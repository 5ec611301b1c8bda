"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the enrichment tests.

Usage::

    with LLMServer() as llm:
        llm.mode = "good"                 # default answer
        llm.script("http_500", "good")    # the next two requests, then the default again
        base_url = llm.base_url           # http://127.0.0.1:PORT/v1
        ...
        assert llm.calls() == 3

Modes: ``good`` (a valid card; its tldr quotes the story's headline, so tests can tell which
story it answered), ``fenced`` (the card in prose and a Markdown fence), ``malformed`` (content
that holds no JSON), ``bad_body`` (a response body that is not JSON), ``wrong_schema`` (JSON
missing fields, a number for a string), ``http_500``, ``http_429`` (with ``Retry-After:
retry_after``), ``slow`` (answers after ``delay`` seconds), ``refuse_schema`` (400 to a
json_schema ``response_format``, good otherwise). ``usage`` sets the token counts reported
(None: no usage block). Every request body is kept (``requests``), with the peak number of
requests in flight (``peak``).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


def good_card(headline: str, *, title: str | None = "Translated headline") -> dict[str, Any]:
    """The card the fake model writes for a story with ``headline``."""
    return {
        "title": title,
        "tldr": f"Summary of: {headline}",
        "what_changed": "Something changed.",
        "why_it_matters": "It matters.",
        "what_to_do_next": "Watch for the next step.",
        "who_should_care": "Investors and engineers.",
        "key_takeaways": ["First point", "Second point"],
    }


def _headline(body: dict[str, Any]) -> str:
    """The story headline from our prompt's user message (JSON after 'Report:')."""
    try:
        user = body["messages"][-1]["content"]
        return str(json.loads(user.split("\n", 1)[1])["headline"])
    except (KeyError, IndexError, ValueError, TypeError):
        return "?"


class LLMServer:
    """See the module docstring."""

    def __init__(self) -> None:
        self.mode = "good"
        self.delay = 2.0
        self.retry_after = "1"
        self.usage: tuple[int, int] | None = (120, 80)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.peak = 0
        self._queue: deque[str] = deque()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                outer._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    # ------------------------------------------------------------------ control

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *modes: str) -> None:
        """Answer the next requests with ``modes``, in order, then with ``mode`` again."""
        with self._lock:
            self._queue.extend(modes)

    def calls(self) -> int:
        with self._lock:
            return len(self.requests)

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.set()  # slow handlers answer at once
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------ serving

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in h.headers.items()})
            mode = self._queue.popleft() if self._queue else self.mode
            self._in_flight += 1
            self.peak = max(self.peak, self._in_flight)
        try:
            self._answer(h, mode, body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout): normal for "slow"
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, h: BaseHTTPRequestHandler, mode: str, body: dict[str, Any]) -> None:
        if h.path != "/v1/chat/completions":
            return self._send(h, 404, {"error": {"message": f"no route {h.path}"}})
        if mode == "slow":
            self._release.wait(self.delay)
            mode = "good"
        if mode == "http_500":
            return self._send(h, 500, {"error": {"message": "internal error"}})
        if mode == "http_429":
            return self._send(
                h, 429, {"error": {"message": "rate limited"}}, {"Retry-After": self.retry_after}
            )
        fmt = (body.get("response_format") or {}).get("type")
        if mode == "refuse_schema":
            if fmt == "json_schema":
                msg = {"error": {"message": "response_format json_schema is not supported"}}
                return self._send(h, 400, msg)
            mode = "good"
        headline = _headline(body)
        if mode == "bad_body":
            return self._send_raw(h, 200, b"<html>gateway error</html>", "text/html")
        if mode == "good":
            content = json.dumps(good_card(headline), ensure_ascii=False)
        elif mode == "fenced":
            card = json.dumps(good_card(headline), ensure_ascii=False)
            content = f"Here is the card you asked for:\n```json\n{card}\n```\nAnything else?"
        elif mode == "malformed":
            content = "I am sorry, I cannot produce JSON today."
        elif mode == "wrong_schema":
            content = json.dumps({"tldr": 42, "why_it_matters": "x"})
        else:
            raise ValueError(f"unknown mode {mode!r}")
        reply: dict[str, Any] = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "fake-model-1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
        }
        if self.usage is not None:
            p, c = self.usage
            reply["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}
        self._send(h, 200, reply)

    def _send(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        payload: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_raw(h, status, data, "application/json", headers)

    def _send_raw(
        self,
        h: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        with self._lock:
            self.statuses.append(status)
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()
