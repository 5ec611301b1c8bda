"""A real, threaded HTTP/1.1 server on 127.0.0.1 that plays publishers in tests.

Usage::

    with FeedServer() as server:
        server.serve("/feed.xml", b"<rss ...>", content_type="application/rss+xml")
        url = server.url("/feed.xml")
        ...
        server.serve("/feed.xml", new_body)   # the feed gains items between polls
        assert server.statuses("/feed.xml") == [200, 304, 200]

As a pytest fixture::

    feed_server = pytest.fixture(running_server, name="feed_server")

Static routes get an ETag (hash of the body) and a Last-Modified (when the body last changed)
and answer conditional requests with 304; ``validators=False`` turns that off for a route.
Bodies are gzipped when the client accepts it (``gzip=False`` to disable). Every request is
logged (path, lower-cased request headers, status, start time) and the server tracks how many
requests are in flight, overall and per ``Host`` header, so tests can assert 304s, conditional
headers, concurrency bounds and politeness gaps.

Odd publishers are custom handlers: any ``Callable[[Exchange], None]`` registered with
:meth:`FeedServer.handle`; the factories below (:func:`status`, :func:`redirect`,
:func:`slow_drip`, :func:`reset_mid_body`, :func:`endless_body`, :func:`gzip_bomb`, ...) cover
the usual misbehaviour.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import hashlib
import mimetypes
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

Handler = Callable[["Exchange"], None]


class ClientGone(Exception):
    """The client closed the connection while a handler was writing (normal for timeouts)."""


# --------------------------------------------------------------------------- request log


@dataclass(slots=True)
class LoggedRequest:
    """One request as the server saw it.

    It is logged when its status line is sent (before the client can see the response), so a
    test that got its answer always finds the entry; ``finished`` is filled in afterwards.
    """

    method: str
    path: str  # including the query string
    headers: dict[str, str]  # lower-cased names
    status: int = 0  # 0: the handler never answered
    started: float = 0.0  # time.monotonic() when the request was dispatched
    finished: float | None = None


# --------------------------------------------------------------------------- routes


@dataclass(slots=True)
class _Static:
    body: bytes
    content_type: str
    headers: dict[str, str]
    validators: bool
    gzip: bool
    status: int
    etag: str
    last_modified: float  # epoch seconds, whole
    gzipped: bytes | None = None


@dataclass(slots=True)
class _Dir:
    directory: Path
    validators: bool
    gzip: bool


@dataclass
class _Stats:
    in_flight: int = 0
    peak: int = 0
    by_host: dict[str, int] = field(default_factory=dict)
    peak_by_host: dict[str, int] = field(default_factory=dict)


def _etag(body: bytes) -> str:
    return '"' + hashlib.blake2b(body, digest_size=10).hexdigest() + '"'


def http_date(epoch: float) -> str:
    """Format ``epoch`` as an IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return email.utils.formatdate(epoch, usegmt=True)


def _accepts_gzip(value: str | None) -> bool:
    if not value:
        return False
    for part in value.split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip()
            return not (q.startswith("q=") and float(q[2:] or 0) == 0)
    return False


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    bare = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == bare for tag in header.split(","))


# --------------------------------------------------------------------------- exchange


class Exchange:
    """One request/response, handed to custom handlers; wraps the raw stdlib handler."""

    def __init__(self, handler: _RequestHandler) -> None:
        self._h = handler
        self.method: str = handler.command
        self.path: str = handler.path
        self.headers: dict[str, str] = {k.lower(): v for k, v in handler.headers.items()}
        self.server: FeedServer = handler.server.feed_server  # type: ignore[attr-defined]
        self.entry = LoggedRequest(self.method, self.path, self.headers, 0, time.monotonic())
        self._logged = False

    @property
    def status(self) -> int:
        """The status sent so far (0 before :meth:`start`)."""
        return self.entry.status

    def _log(self) -> None:
        if not self._logged:
            self._logged = True
            self.server._append(self.entry)

    @property
    def socket(self) -> socket.socket:
        """The connection's socket (for handlers that misbehave at the TCP level)."""
        sock: socket.socket = self._h.connection
        return sock

    def start(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Send the status line and headers (add ``Content-Length`` yourself if you want it)."""
        self.entry.status = status
        self._log()
        self._h.send_response(status)
        for name, value in (headers or {}).items():
            self._h.send_header(name, value)
        self._h.end_headers()
        self.flush()

    def write(self, data: bytes) -> None:
        """Write body bytes; raises :class:`ClientGone` when the client hung up."""
        try:
            self._h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise ClientGone from exc

    def flush(self) -> None:
        """Push buffered bytes to the client."""
        try:
            self._h.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise ClientGone from exc

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Send a complete response with a Content-Length."""
        all_headers = dict(headers or {})
        if content_type:
            all_headers["Content-Type"] = content_type
        if status not in (204, 304) and not (100 <= status < 200):
            all_headers["Content-Length"] = str(len(body))
        self.start(status, all_headers)
        if body and self.method != "HEAD":
            self.write(body)

    def close_connection(self) -> None:
        """Do not keep this connection alive after the handler returns."""
        self._h.close_connection = True

    def reset(self) -> None:
        """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing server would."""
        self.flush_quietly()
        sock = self.socket
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._h.close_connection = True
        self._h.reset_done = True
        sock.close()

    def flush_quietly(self) -> None:
        """Flush, ignoring a client that already left."""
        with contextlib.suppress(ClientGone):
            self.flush()


# --------------------------------------------------------------------------- handler factories


def status(code: int, headers: Mapping[str, str] | None = None, body: bytes = b"") -> Handler:
    """Answer every request with ``code`` (e.g. 404, 410, 500) and optional headers."""

    def handler(ex: Exchange) -> None:
        ex.send(code, body, headers, content_type="text/plain" if body else None)

    return handler


def retry_after(code: int, value: str) -> Handler:
    """Answer with ``code`` (429 or 503) and ``Retry-After: value`` (seconds or HTTP-date)."""
    return status(code, {"Retry-After": value}, b"slow down")


def redirect(location: str, code: int = 301) -> Handler:
    """Redirect to ``location`` (absolute, or a path on this server) with ``code``."""

    def handler(ex: Exchange) -> None:
        ex.send(code, b"", {"Location": location})

    return handler


def slow_drip(
    total_bytes: int = 10_000, chunk: bytes = b"<", interval: float = 0.05, declared: bool = True
) -> Handler:
    """Send a 200 and then ``chunk`` every ``interval`` seconds (a slowloris publisher)."""

    def handler(ex: Exchange) -> None:
        headers = {"Content-Type": "application/rss+xml"}
        if declared:
            headers["Content-Length"] = str(total_bytes)
        ex.start(200, headers)
        sent = 0
        while sent < total_bytes and not ex.server.closing:
            ex.write(chunk)
            ex.flush()
            sent += len(chunk)
            time.sleep(interval)
        ex.close_connection()

    return handler


def reset_mid_body(sent: bytes = b"<rss><channel><title>half", declared: int = 100_000) -> Handler:
    """Promise ``declared`` bytes, send ``sent``, then reset the connection."""

    def handler(ex: Exchange) -> None:
        ex.start(200, {"Content-Type": "application/rss+xml", "Content-Length": str(declared)})
        ex.write(sent)
        ex.flush()
        time.sleep(0.05)
        ex.reset()

    return handler


def endless_body(chunk_size: int = 64 * 1024, chunked: bool = True) -> Handler:
    """Stream zeros forever (chunked, or close-delimited) until the client hangs up."""

    def handler(ex: Exchange) -> None:
        block = b"x" * chunk_size
        if chunked:
            ex.start(200, {"Content-Type": "application/rss+xml", "Transfer-Encoding": "chunked"})
            frame = f"{chunk_size:x}\r\n".encode() + block + b"\r\n"
        else:
            ex.start(200, {"Content-Type": "application/rss+xml", "Connection": "close"})
            frame = block
        ex.close_connection()
        while not ex.server.closing:
            ex.write(frame)

    return handler


def gzip_bomb(decoded_bytes: int = 1024**3, *, checksum: bool = False) -> Handler:
    """Send a ~1000:1 gzip body that inflates to ``decoded_bytes`` of zeros (MiB multiples).

    Built in milliseconds by repeating one fully-flushed deflate block of a MiB of zeros.
    Without ``checksum`` the gzip trailer's CRC is bogus (a bomb is hostile anyway, and a
    correct fetcher stops long before the trailer); with it the body is a valid gzip file.
    """
    mib = 1024 * 1024
    count = max(1, decoded_bytes // mib)
    block = b"\0" * mib
    comp = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    if checksum:
        for _ in range(count):
            crc = zlib.crc32(block, crc)
    body = b"".join(
        [
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff",  # gzip header, no name, mtime 0
            deflated * count,
            comp.flush(),  # the final empty block
            struct.pack("<II", crc, (count * mib) & 0xFFFFFFFF),
        ]
    )

    def handler(ex: Exchange) -> None:
        ex.send(200, body, {"Content-Encoding": "gzip"}, content_type="application/rss+xml")

    return handler


def chunks(
    parts: list[bytes], delay: float = 0.0, content_type: str = "application/rss+xml"
) -> Handler:
    """Send ``parts`` as HTTP chunks, sleeping ``delay`` between them."""

    def handler(ex: Exchange) -> None:
        ex.start(200, {"Content-Type": content_type, "Transfer-Encoding": "chunked"})
        for part in parts:
            ex.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            ex.flush()
            if delay:
                time.sleep(delay)
        ex.write(b"0\r\n\r\n")

    return handler


def delayed(seconds: float, inner: Handler) -> Handler:
    """Sleep ``seconds`` before running ``inner`` (a slow but well-behaved publisher)."""

    def handler(ex: Exchange) -> None:
        time.sleep(seconds)
        inner(ex)

    return handler


# --------------------------------------------------------------------------- server


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FeedServer/1"
    timeout = 30  # idle keep-alive connections do not hold a thread forever
    reset_done = False

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the stdlib's stderr log; the FeedServer keeps its own."""

    def setup(self) -> None:
        super().setup()
        self.server.feed_server._track(self.connection, add=True)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            if not self.reset_done:
                super().finish()
        except OSError:
            pass
        finally:
            self.server.feed_server._track(self.connection, add=False)  # type: ignore[attr-defined]

    def _dispatch(self) -> None:
        feed_server: FeedServer = self.server.feed_server  # type: ignore[attr-defined]
        feed_server._dispatch(self)

    do_GET = _dispatch
    do_HEAD = _dispatch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024
    feed_server: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client hang-ups are normal here; anything else is recorded for the test to see."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ClientGone | OSError):
            return
        self.feed_server.errors.append(repr(exc))


class FeedServer:
    """A threaded HTTP/1.1 publisher on 127.0.0.1 with an ephemeral port (see module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, _Static | Handler] = {}
        self._dirs: dict[str, _Dir] = {}
        self._log: list[LoggedRequest] = []
        self._stats = _Stats()
        self._conns: set[socket.socket] = set()
        self.errors: list[str] = []  # unexpected exceptions raised by handlers
        self.closing = False
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> FeedServer:
        """Bind 127.0.0.1:0 and serve in a daemon thread."""
        httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        httpd.feed_server = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, abort open connections, and release the port."""
        if self._httpd is None:
            return
        self.closing = True
        self._httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The ephemeral port the server listens on."""
        assert self._httpd is not None, "server not started"
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """Absolute URL of ``path``; ``host="localhost"`` gives a second politeness host."""
        if not path.startswith("/"):
            path = "/" + path
        return f"http://{host}:{self.port}{path}"

    # ----------------------------------------------------------------- routes

    def serve(
        self,
        path: str,
        body: bytes,
        content_type: str = "application/rss+xml; charset=utf-8",
        headers: Mapping[str, str] | None = None,
        *,
        validators: bool = True,
        gzip: bool = True,
        status: int = 200,
    ) -> None:
        """Serve ``body`` at ``path`` (replacing what was there); thread-safe at run time."""
        with self._lock:
            old = self._routes.get(path)
            now = float(int(time.time()))
            if isinstance(old, _Static):
                # a changed body is strictly later, so If-Modified-Since sees the change
                same = old.body == body
                now = old.last_modified if same else max(now, old.last_modified + 1)
            self._routes[path] = _Static(
                body=body,
                content_type=content_type,
                headers=dict(headers or {}),
                validators=validators,
                gzip=gzip,
                status=status,
                etag=_etag(body),
                last_modified=now,
            )

    set = serve

    def handle(self, path: str, handler: Handler) -> None:
        """Route ``path`` to a custom handler (see the factories in this module)."""
        with self._lock:
            self._routes[path] = handler

    def remove(self, path: str) -> None:
        """Forget ``path`` (it answers 404 afterwards)."""
        with self._lock:
            self._routes.pop(path, None)

    def serve_dir(
        self, prefix: str, directory: str | Path, *, validators: bool = True, gzip: bool = True
    ) -> None:
        """Serve the files under ``directory`` at ``prefix/<relative path>``."""
        prefix = "/" + prefix.strip("/")
        with self._lock:
            self._dirs[prefix] = _Dir(Path(directory).resolve(), validators, gzip)

    # ----------------------------------------------------------------- inspection

    @property
    def log(self) -> list[LoggedRequest]:
        """A copy of the request log, oldest first."""
        with self._lock:
            return list(self._log)

    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally only those for ``path`` (query string ignored)."""
        return [r for r in self.log if path is None or r.path.split("?", 1)[0] == path]

    def statuses(self, path: str | None = None) -> list[int]:
        """The status codes answered, in order, optionally for one path."""
        return [r.status for r in self.requests(path)]

    def clear_log(self) -> None:
        """Forget logged requests and reset the concurrency peaks."""
        with self._lock:
            self._log.clear()
            self._stats.peak = self._stats.in_flight
            self._stats.peak_by_host = dict(self._stats.by_host)

    @property
    def peak_concurrency(self) -> int:
        """The most requests ever in flight at once (since start or :meth:`clear_log`)."""
        with self._lock:
            return self._stats.peak

    def peak_concurrency_for(self, host: str) -> int:
        """Peak in-flight requests whose ``Host`` header named ``host`` (without the port)."""
        with self._lock:
            return self._stats.peak_by_host.get(host, 0)

    # ----------------------------------------------------------------- internals

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _enter(self, host: str) -> None:
        with self._lock:
            s = self._stats
            s.in_flight += 1
            s.peak = max(s.peak, s.in_flight)
            s.by_host[host] = s.by_host.get(host, 0) + 1
            s.peak_by_host[host] = max(s.peak_by_host.get(host, 0), s.by_host[host])

    def _leave(self, host: str) -> None:
        with self._lock:
            self._stats.in_flight -= 1
            self._stats.by_host[host] -= 1

    def _lookup(self, path: str) -> _Static | Handler | None:
        with self._lock:
            route = self._routes.get(path)
            if route is not None:
                return route
            for prefix, d in self._dirs.items():
                if path.startswith(prefix + "/"):
                    return self._from_dir(d, path[len(prefix) + 1 :])
        return None

    def _from_dir(self, d: _Dir, relative: str) -> _Static | None:
        target = (d.directory / unquote(relative)).resolve()
        if not target.is_relative_to(d.directory) or not target.is_file():
            return None
        body = target.read_bytes()
        guessed = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if target.suffix in (".xml", ".rss", ".atom"):
            guessed = "application/xml"
        return _Static(
            body=body,
            content_type=guessed,
            headers={},
            validators=d.validators,
            gzip=d.gzip,
            status=200,
            etag=_etag(body),
            last_modified=float(int(target.stat().st_mtime)),
        )

    def _append(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def _dispatch(self, h: _RequestHandler) -> None:
        ex = Exchange(h)
        host = ex.headers.get("host", "").rsplit(":", 1)[0]
        self._enter(host)
        try:
            route = self._lookup(urlsplit(h.path).path)
            if route is None:
                ex.send(404, b"not found", content_type="text/plain")
            elif isinstance(route, _Static):
                self._send_static(ex, route)
            else:
                route(ex)
        finally:
            self._leave(host)
            ex.entry.finished = time.monotonic()
            ex._log()

    def _send_static(self, ex: Exchange, route: _Static) -> None:
        headers = dict(route.headers)
        if route.validators:
            headers["ETag"] = route.etag
            headers["Last-Modified"] = http_date(route.last_modified)
            if route.status == 200 and self._not_modified(ex.headers, route):
                ex.send(304, b"", headers)
                return
        body = route.body
        if route.gzip:
            headers["Vary"] = "Accept-Encoding"
            if _accepts_gzip(ex.headers.get("accept-encoding")) and body:
                if route.gzipped is None:
                    route.gzipped = gzip.compress(body, compresslevel=6, mtime=0)
                body = route.gzipped
                headers["Content-Encoding"] = "gzip"
        ex.send(route.status, body, headers, content_type=route.content_type)

    @staticmethod
    def _not_modified(request: Mapping[str, str], route: _Static) -> bool:
        inm = request.get("if-none-match")
        if inm is not None:  # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
            return _etag_matches(inm, route.etag)
        ims = request.get("if-modified-since")
        if ims is None:
            return False
        try:
            since = email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
        return route.last_modified <= since


def running_server() -> Iterator[FeedServer]:
    """Generator for a pytest fixture: ``pytest.fixture(running_server, name="feed_server")``."""
    with FeedServer() as server:
        yield server
