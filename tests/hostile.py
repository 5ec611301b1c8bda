"""Hostile and broken publishers on 127.0.0.1: the route table behind ``test_hostile.py``.

:func:`install_hostile` puts one route per misbehaviour on a :class:`tests.servers.FeedServer`
and returns a :class:`HostileCase` per route: the source key and URL to configure, what the
poller should record (status, a word the last error must contain, how many items the source
keeps) and, for cases whose behaviour changes between two polls, what to switch before the
second poll (:func:`switch_for_second_poll`). A benchmark can reuse the same table to mix
hostile publishers into a farm of good ones.

Nothing here talks to anything but 127.0.0.1. The two cases that need a failing name lookup or
TLS handshake do it locally: the DNS case uses a host name under the reserved ``.invalid`` TLD
(RFC 2606) that is also longer than the 255 bytes a DNS query can carry, so the C resolver
gives up before building a query (checked with ``strace``: no ``AF_INET`` socket is opened,
whereas a short ``x.invalid`` *is* sent to the configured nameserver); the TLS cases talk
``https`` to the plain-HTTP server and to :class:`SelfSignedTLSServer`. Retry-After routes live
on the host name ``localhost`` (resolved from ``/etc/hosts``, no DNS traffic): a Retry-After
holds the whole host in the fetcher, and the other cases must not queue behind that hold.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType

from tests.servers import (
    FeedServer,
    Handler,
    chunks,
    delayed,
    endless_body,
    gzip_bomb,
    http_date,
    redirect,
    reset_mid_body,
    retry_after,
    slow_drip,
)
from tests.servers import status as http_status

ROOT = Path(__file__).resolve().parents[1]
FEEDS = ROOT / "tests" / "data" / "feeds"
HOSTILE = ROOT / "tests" / "data" / "hostile"

#: Titles of the three entries in every ``tests/data/hostile/zh-*.rss.xml`` fixture.
ZH_TITLES = ("华为发布新款折叠屏手机", "小米汽车月销量创新高", "阿里云发布通义大模型新版本")

#: Seconds the Retry-After routes ask for (the schedule must not poll them again sooner).
RETRY_AFTER_SECONDS = 600
RETRY_AFTER_DATE_SECONDS = 900

#: A host name no resolver can send a query for: ``.invalid`` and over 255 bytes long.
UNRESOLVABLE_HOST = ".".join(["x" * 60] * 5) + ".feed.invalid"

MIB = 1024 * 1024
RSS = "application/rss+xml; charset=utf-8"


# --------------------------------------------------------------------------- feed bodies


def rss(
    entries: list[str], *, title: str = "Test feed", build: str = "", language: str = "en"
) -> bytes:
    """A UTF-8 RSS 2.0 document around already-rendered ``<item>`` elements."""
    channel = (
        f"<title>{title}</title><link>https://site.example/</link><language>{language}</language>"
    )
    if build:
        channel += f"<lastBuildDate>{build}</lastBuildDate>"
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        + channel
        + "\n".join(entries)
        + "</channel></rss>\n"
    ).encode()


def item(
    title: str,
    *,
    link: str | None = None,
    guid: str | None = None,
    date: str | None = None,
    body: str = "",
) -> str:
    """One ``<item>``; ``body`` goes into a CDATA description."""
    parts = [f"<title>{title}</title>"]
    if link is not None:
        parts.append(f"<link>{link}</link>")
    if guid is not None:
        parts.append(f'<guid isPermaLink="false">{guid}</guid>')
    if date is not None:
        parts.append(f"<pubDate>{date}</pubDate>")
    parts.append(f"<description><![CDATA[{body or title}]]></description>")
    return "<item>" + "".join(parts) + "</item>"


def good_feed(name: str, count: int) -> bytes:
    """A well-formed feed of ``count`` distinct entries dated within the last day."""
    now = datetime.now(UTC).replace(microsecond=0)
    return rss(
        [
            item(
                f"{name} story {i}",
                link=f"https://{name}.example/story/{i}",
                guid=f"{name}-{i}",
                date=http_date((now - timedelta(hours=i + 1)).timestamp()),
                body=f"<p>Body of {name} story {i}.</p>",
            )
            for i in range(count)
        ],
        title=name,
    )


def same_guid_feed(build: int, *, links: bool = True) -> bytes:
    """Five different entries that all carry the same GUID (with or without distinct links)."""
    return rss(
        [
            item(
                f"Same-guid entry {i}",
                link=f"https://same-guid.example/post/{i}" if links else None,
                guid="always-the-same-guid",
                body=f"<p>Entry number {i} has its own text.</p>",
            )
            for i in range(5)
        ],
        build=f"build {build}",
    )


def churning_guid_feed(fetch: int) -> bytes:
    """Four entries whose GUIDs are new on every fetch while links and text stay the same."""
    return rss(
        [
            item(
                f"Churn entry {i}",
                link=f"https://churn.example/article/{i}",
                guid=f"urn:uuid:fetch-{fetch}-entry-{i}",
                body=f"<p>Stable text of churn entry {i}.</p>",
            )
            for i in range(4)
        ]
    )


#: pubDate values of :func:`far_dates_feed`: far future, far past, and one sane date.
FAR_DATES = (
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "2999-01-01T00:00:00Z",
    "Mon, 01 Jan 2200 00:00:00 GMT",
    "Mon, 01 Jan 1900 00:00:00 GMT",
    "0001-01-01T00:00:00Z",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "yesterday",  # replaced by a real date one day ago
)


def far_dates_feed() -> bytes:
    """One entry per date in :data:`FAR_DATES`."""
    yesterday = http_date((datetime.now(UTC) - timedelta(days=1)).timestamp())
    return rss(
        [
            item(
                f"Dated entry {i}",
                link=f"https://dates.example/{i}",
                guid=f"dates-{i}",
                date=yesterday if value == "yesterday" else value,
            )
            for i, value in enumerate(FAR_DATES)
        ]
    )


def big_entry_feed(megabytes: int = 10) -> bytes:
    """One entry of ``megabytes`` MB of (Chinese and Latin) HTML, then one small entry."""
    paragraph = "<p>这是一段很长的正文，用来测试单个超大条目。A very long paragraph.</p>"
    size = len(paragraph.encode())
    huge = paragraph * (megabytes * 1_000_000 // size + 1)
    return rss(
        [
            item("Huge entry", link="https://big.example/huge", guid="huge", body=huge),
            item("Small entry", link="https://big.example/small", guid="small"),
        ]
    )


def xxe_feed(canary: str) -> bytes:
    """External DTD, external general and parameter entities pointing at ``canary`` (our own
    server: a request there means the parser fetched it) and at ``/etc/passwd``."""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE rss SYSTEM "{canary}/dtd" [
<!ENTITY % remote SYSTEM "{canary}/parameter">
%remote;
<!ENTITY passwd SYSTEM "file:///etc/passwd">
<!ENTITY fetched SYSTEM "{canary}/general">
]>
<rss version="2.0"><channel><title>xxe</title><link>https://xxe.example/</link>
<item><title>before&passwd;middle&fetched;after</title><link>https://xxe.example/1</link>
<guid>xxe-1</guid><description>&passwd;&fetched;</description></item>
</channel></rss>
""".encode()


def html_page() -> bytes:
    """A web page where a feed should be (the repo's not-a-feed fixture)."""
    return (FEEDS / "not-a-feed.html").read_bytes()


# --------------------------------------------------------------------------- TLS server


class SelfSignedTLSServer:
    """A TLS listener on 127.0.0.1 with a fresh self-signed certificate no client trusts.

    It completes no HTTP exchange: the client must refuse the certificate during the handshake.
    Needs the ``openssl`` command to make the certificate; ``available()`` says if it is there.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.handshakes = 0
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @staticmethod
    def available() -> bool:
        """True when a certificate can be generated here."""
        return shutil.which("openssl") is not None

    def start(self) -> SelfSignedTLSServer:
        """Make the certificate, bind 127.0.0.1:0 and accept in a daemon thread."""
        cert, key = self.directory / "cert.pem", self.directory / "key.pem"
        command = [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ]
        subprocess.run(
            [*command, "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, args=(context,), daemon=True)
        self._thread.start()
        return self

    def _serve(self, context: ssl.SSLContext) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.handshakes += 1
            conn.settimeout(2)
            with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)
            conn.close()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self._sock is not None, "server not started"
        return int(self._sock.getsockname()[1])

    def close(self) -> None:
        """Stop accepting and release the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> SelfSignedTLSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def refused_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class HostileCase:
    """One publisher (good or bad) and what the poller must record for it after two polls.

    ``status`` is the stored status after the second poll ("ok" also accepts "not_modified");
    ``error`` must appear in ``last_error`` (None: no error recorded); ``items`` is how many
    items the source holds after both polls; ``polls`` how many times it is fetched (the
    Retry-After cases are not due at the second poll); ``second`` switches the route's
    behaviour before the second poll.
    """

    key: str
    url: str
    why: str
    status: str
    error: str | None = None
    items: int = 0
    polls: int = 2
    second: Callable[[FeedServer], None] | None = None
    path: str | None = None  # the route on the FeedServer, when there is one

    @property
    def enabled(self) -> bool:
        """Sources answered with 410 Gone end up disabled."""
        return self.status != "gone"


def install_hostile(server: FeedServer, *, tls_server_port: int | None = None) -> list[HostileCase]:
    """Route every hostile case on ``server`` and return the table (see the module doc)."""
    cases: list[HostileCase] = []

    def add(
        key: str,
        why: str,
        route: bytes | Handler,
        *,
        status: str,
        error: str | None = None,
        items: int = 0,
        polls: int = 2,
        second: Callable[[FeedServer], None] | None = None,
        host: str = "127.0.0.1",
        content_type: str = RSS,
        gzip: bool = True,
    ) -> None:
        path = f"/hostile/{key}"
        if isinstance(route, bytes):
            server.serve(path, route, content_type=content_type, gzip=gzip)
        else:
            server.handle(path, route)
        url = server.url(path, host=host)
        cases.append(HostileCase(key, url, why, status, error, items, polls, second, path))

    # --- slow, broken and endless transfers
    add(
        "slowloris",
        "200, then one byte every 0.2 s (never slower than the read timeout)",
        slow_drip(total_bytes=100_000, interval=0.2),
        status="error",
        error="timeout",
    )
    add(
        "stall-headers",
        "accepts the connection and sends nothing for 8 s",
        delayed(8.0, http_status(200, body=b"late")),
        status="error",
        error="timeout",
    )
    add(
        "reset-mid-body",
        "promises 100 kB, sends 26 bytes, then TCP RST",
        reset_mid_body(),
        status="error",
        error="reset",
    )
    add(
        "endless-chunked",
        "chunked body that never ends",
        endless_body(),
        status="error",
        error="too_large",
    )
    add(
        "endless-close",
        "close-delimited body that never ends",
        endless_body(chunked=False),
        status="error",
        error="too_large",
    )
    add(
        "over-cap-declared",
        "13 MiB body with an honest Content-Length",
        b"<" * (13 * MIB),
        gzip=False,
        status="error",
        error="too_large",
    )
    add(
        "over-cap-chunked",
        "13 MiB body in chunks, no Content-Length",
        chunks([b"<" * MIB] * 13),
        status="error",
        error="too_large",
    )
    add(
        "gzip-bomb",
        "1 MB of gzip that inflates to 1 GiB",
        gzip_bomb(1024**3),
        status="error",
        error="too_large",
    )

    # --- XML attacks
    add(
        "billion-laughs",
        "nested entity expansion (10^9 'lol')",
        (FEEDS / "billion-laughs.rss.xml").read_bytes(),
        status="error",
        error="entit",
    )
    add(
        "quadratic-blowup",
        "one big entity referenced thousands of times",
        (FEEDS / "quadratic-blowup.rss.xml").read_bytes(),
        status="error",
        error="entit",
    )
    add(
        "xxe",
        "external DTD, external general/parameter entities, file:///etc/passwd",
        xxe_feed(server.url("/hostile/xxe-canary")),
        status="ok",
        items=1,
    )

    # --- redirects
    server.handle("/hostile/loop-b", redirect("/hostile/redirect-loop", 302))
    add(
        "redirect-loop",
        "302 to a page that redirects back",
        redirect("/hostile/loop-b", 302),
        status="error",
        error="redirect_loop",
    )
    for hop in range(1, 10):
        server.handle(f"/hostile/chain-{hop}", redirect(f"/hostile/chain-{hop + 1}", 307))
    add(
        "redirect-chain",
        "ten 307 hops (more than max_redirects)",
        redirect("/hostile/chain-1", 307),
        status="error",
        error="too_many_redirects",
    )
    server.serve("/hostile/moved-final", good_feed("moved", 3), content_type=RSS)
    server.handle("/hostile/moved-2", redirect("/hostile/moved-final", 308))
    add(
        "redirect-permanent",
        "301 then 308 to a good feed (the stored URL follows)",
        redirect("/hostile/moved-2", 301),
        status="ok",
        items=3,
    )

    # --- HTTP errors, with and without Retry-After
    for code in (500, 502, 503, 429):
        add(
            f"http-{code}",
            f"HTTP {code}, no Retry-After",
            http_status(code, body=b"<html>error</html>"),
            status="error",
            error=f"http_{code}",
        )
    for code in (500, 502):
        add(
            f"http-{code}-retry-after",
            f"HTTP {code} with Retry-After (RFC 9110 defines it for 503 and 429 only)",
            http_status(code, {"Retry-After": "5"}, b"<html>error</html>"),
            status="error",
            error=f"http_{code}",
        )
    add(
        "http-503-retry-after",
        f"HTTP 503, Retry-After: {RETRY_AFTER_SECONDS} (seconds)",
        retry_after(503, str(RETRY_AFTER_SECONDS)),
        host="localhost",
        status="error",
        error="http_503",
        polls=1,
    )
    when = datetime.now(UTC) + timedelta(seconds=RETRY_AFTER_DATE_SECONDS)
    add(
        "http-429-retry-after",
        f"HTTP 429, Retry-After: an HTTP-date {RETRY_AFTER_DATE_SECONDS} s ahead",
        retry_after(429, http_date(when.timestamp())),
        host="localhost",
        status="error",
        error="http_429",
        polls=1,
    )
    add("http-404", "HTTP 404", http_status(404), status="error", error="http_404")
    add("http-410", "HTTP 410 Gone", http_status(410), status="gone", error="http_410", polls=1)

    # --- 200s that are not feeds
    add(
        "html-page",
        "200 with an HTML page",
        html_page(),
        content_type="text/html; charset=utf-8",
        status="error",
        error="parse",
    )
    add("empty-body", "200 with an empty body", http_status(200), status="error", error="empty")

    # --- charsets
    zh = "application/rss+xml; charset="
    add(
        "gbk-declared-as-utf8",
        "GBK bytes with encoding=gbk in the XML declaration, HTTP says charset=utf-8",
        (HOSTILE / "zh-gbk-declared.rss.xml").read_bytes(),
        content_type=zh + "utf-8",
        status="ok",
        items=3,
    )
    add(
        "gbk-as-utf8",
        "GBK bytes without an XML encoding, HTTP says charset=utf-8",
        (HOSTILE / "zh-gbk-undeclared.rss.xml").read_bytes(),
        content_type=zh + "utf-8",
        status="ok",
        items=3,
    )
    add(
        "gbk-no-charset",
        "GBK bytes, no charset anywhere",
        (HOSTILE / "zh-gbk-undeclared.rss.xml").read_bytes(),
        content_type="application/rss+xml",
        status="ok",
        items=3,
    )
    add(
        "utf8-as-gbk",
        "UTF-8 bytes (declared utf-8 in XML), HTTP says charset=gbk",
        (HOSTILE / "zh-utf8.rss.xml").read_bytes(),
        content_type=zh + "gbk",
        status="ok",
        items=3,
    )
    add(
        "invalid-utf8",
        "UTF-8 feed with three stray invalid bytes in one title",
        (HOSTILE / "invalid-utf8.rss.xml").read_bytes(),
        content_type=zh + "utf-8",
        status="ok",
        items=3,
    )

    # --- identity and dates
    add(
        "same-guid",
        "five entries, one GUID, distinct links (re-parsed on the second poll)",
        same_guid_feed(1),
        status="ok",
        items=5,
        second=lambda s: s.serve("/hostile/same-guid", same_guid_feed(2), content_type=RSS),
    )
    add(
        "same-guid-no-links",
        "five entries, one GUID, no links (re-parsed on the second poll)",
        same_guid_feed(1, links=False),
        status="ok",
        items=5,
        second=lambda s: s.serve(
            "/hostile/same-guid-no-links", same_guid_feed(2, links=False), content_type=RSS
        ),
    )
    add(
        "guid-churn",
        "every GUID changes on every fetch; links and text stay",
        churning_guid_feed(1),
        status="ok",
        items=4,
        second=lambda s: s.serve("/hostile/guid-churn", churning_guid_feed(2), content_type=RSS),
    )
    add(
        "far-dates",
        "pubDates in year 9999, 2999, 2200, 1900, 0001 and 1970",
        far_dates_feed(),
        status="ok",
        items=len(FAR_DATES),
    )
    add(
        "big-entry",
        "one 10 MB entry (under the 12 MiB cap) next to a small one",
        big_entry_feed(10),
        status="ok",
        items=2,
    )

    # --- good in the first poll, hostile in the second: stored items must survive
    flips: dict[str, tuple[str, Callable[[FeedServer, str], None], str, str]] = {
        "turns-html": (
            "an HTML page",
            lambda s, p: s.serve(p, html_page(), content_type="text/html"),
            "error",
            "parse",
        ),
        "turns-reset": (
            "a reset mid-body",
            lambda s, p: s.handle(p, reset_mid_body()),
            "error",
            "reset",
        ),
        "turns-empty": (
            "an empty 200",
            lambda s, p: s.handle(p, http_status(200)),
            "error",
            "empty",
        ),
        "turns-500": ("HTTP 500", lambda s, p: s.handle(p, http_status(500)), "error", "http_500"),
        "turns-gone": ("HTTP 410", lambda s, p: s.handle(p, http_status(410)), "gone", "http_410"),
    }
    for key, (what, switch, final, error) in flips.items():
        path = f"/hostile/{key}"
        add(
            key,
            f"a good feed of 4 entries that turns into {what} on the second poll",
            good_feed(key, 4),
            status=final,
            error=error,
            items=4,
            second=_switcher(switch, path),
        )

    # --- network-level failures (no route on the FeedServer)
    cases.append(
        HostileCase(
            "tls-plain-port",
            f"https://127.0.0.1:{server.port}/",
            "https:// to a plain-HTTP port (the handshake fails)",
            status="error",
            error="tls",
        )
    )
    if tls_server_port is not None:
        cases.append(
            HostileCase(
                "tls-self-signed",
                f"https://127.0.0.1:{tls_server_port}/feed.xml",
                "a self-signed certificate",
                status="error",
                error="tls",
            )
        )
    cases.append(
        HostileCase(
            "connection-refused",
            f"http://127.0.0.1:{refused_port()}/feed.xml",
            "nothing listens on the port",
            status="error",
            error="connect",
        )
    )
    cases.append(
        HostileCase(
            "dns-failure",
            f"http://{UNRESOLVABLE_HOST}/feed.xml",
            "a name that cannot resolve (resolved locally, no DNS query leaves)",
            status="error",
            error="dns",
        )
    )
    return cases


def _switcher(switch: Callable[[FeedServer, str], None], path: str) -> Callable[[FeedServer], None]:
    """Bind ``switch`` to ``path`` (a closure per case, not one shared loop variable)."""
    return lambda server: switch(server, path)


def switch_for_second_poll(server: FeedServer, cases: list[HostileCase]) -> None:
    """Apply every case's change of behaviour between the first and the second poll."""
    for case in cases:
        if case.second is not None:
            case.second(server)
