"""SSRF guard for source URLs added through the admin API.

A source URL makes the daemon send GET requests on the caller's behalf, so a URL whose host is
(or resolves to) an internal address would let anyone holding the admin token probe the
container's network: the metadata service at 169.254.169.254, a database on 10.x, the daemon
itself on 127.0.0.1. :func:`check_source_url` refuses http(s) URLs whose host is, or resolves to,
any address that is not publicly routable, unless the address lies inside a network the operator
explicitly allowed (``[admin] allow_networks``).

Everything here is pure except :func:`resolve_host` (``socket.getaddrinfo``), which is a
parameter of :func:`check_source_url` so tests and callers can hand in their own resolver.

IPv6 forms that embed an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible
``::a.b.c.d``, 6to4 ``2002:aabb:ccdd::``, NAT64 ``64:ff9b::a.b.c.d``) are judged by the IPv4
address they carry, so ``::ffff:127.0.0.1`` is loopback and NAT64 of a public address (what an
IPv6-only container's DNS64 hands out) is public.

This check runs when a source is added, so the caller hears at once why a URL is refused. A
publisher that later redirects to, or re-resolves to, an internal address (DNS rebinding) is
refused at connect time by :mod:`aggregator.netguard`, with the same address rules.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from urllib.parse import urlsplit

from aggregator.errors import ConfigError, SourceURLRejected

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
#: Turns a host name into the IP address strings it resolves to; raises ``SourceURLRejected``
#: (or ``OSError``) when it cannot.
Resolver = Callable[[str], Sequence[str]]

ALLOW_SETTING = "[admin] allow_networks"
MAX_URL_LENGTH = 2048

# Special-purpose blocks (RFC 6890 and successors) named explicitly, so the verdict does not
# depend on which Python patch release's ``ipaddress`` tables are installed.
_SPECIAL: tuple[Network, ...] = tuple(
    ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT shared space
        "192.0.0.0/24",
        "192.0.2.0/24",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "::/96",  # IPv4-compatible (deprecated); :: and ::1 are judged before unwrapping
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/23",  # IETF protocol assignments, Teredo included
        "2001:db8::/32",
        "fec0::/10",  # deprecated site-local
    )
)
_PRIVATE: tuple[Network, ...] = tuple(
    ip_network(cidr) for cidr in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_NAT64 = IPv6Network("64:ff9b::/96")
_V4_COMPATIBLE = IPv6Network("::/96")
_IPV4_MASK = 0xFFFFFFFF


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """The allow-list as networks; a bad entry raises ``ConfigError`` naming the setting.

    Host bits are tolerated (``127.0.0.1/8`` means ``127.0.0.0/8``).
    """
    networks: list[Network] = []
    for cidr in cidrs:
        try:
            networks.append(ip_network(cidr.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(
                f"{ALLOW_SETTING}: {cidr!r} is not a network like '10.0.0.0/8' or 'fd00::/8': {exc}"
            ) from exc
    return tuple(networks)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _V4_COMPATIBLE and int(address) > 1):
        return IPv4Address(int(address) & _IPV4_MASK)
    return None


def address_category(address: Address) -> str | None:
    """Why ``address`` is not a public unicast address (e.g. ``"loopback"``), or None if it is."""
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if any(address in net for net in _PRIVATE if net.version == address.version):
        return "private"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "site-local"
    if address.is_reserved:
        return "reserved"
    if (
        address.is_private
        or not address.is_global
        or any(address in net for net in _SPECIAL if net.version == address.version)
    ):
        return "special-purpose (not publicly routable)"
    return None


def _allowed(address: Address, allowed: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in allowed)


def address_problem(address: Address, allowed: Sequence[Network] = ()) -> str | None:
    """What ``address`` is when fetching from it is refused (``"a loopback address"``), or None.

    An address inside an ``allowed`` network is always fine (for an IPv6 form carrying an IPv4
    address, either one being allowed is enough).
    """
    inner = _embedded_ipv4(address) if isinstance(address, IPv6Address) else None
    if _allowed(address, allowed) or (inner is not None and _allowed(inner, allowed)):
        return None
    if inner is not None:
        reason = address_category(inner)
        return None if reason is None else f"the IPv6 form of {inner}, {_a(reason)} address"
    reason = address_category(address)
    return None if reason is None else f"{_a(reason)} address"


def _a(phrase: str) -> str:
    """``phrase`` with its indefinite article."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def resolve_host(host: str) -> list[str]:
    """Every address ``host`` resolves to (``socket.getaddrinfo``), without duplicates.

    Raises ``SourceURLRejected`` when the name does not resolve (or is not a valid name).
    """
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:
        raise SourceURLRejected(f"host {host!r} does not resolve: {exc}") from exc
    seen: dict[str, None] = {}
    for info in infos:
        seen.setdefault(str(info[4][0]), None)
    return list(seen)


def parse_address(text: str) -> Address | None:
    """``text`` as an IP address, or None when it is not one (a host name)."""
    try:
        return ip_address(text)
    except ValueError:
        return None


def check_source_url(
    url: str, allowed: Sequence[Network] = (), resolve: Resolver = resolve_host
) -> str:
    """Return ``url`` when it is safe to poll; raise ``SourceURLRejected`` saying why not.

    Safe: an absolute http(s) URL without spaces or control characters, whose host is a literal
    IP address or a name that resolves, and every address of which is public or allowed.
    """
    if len(url) > MAX_URL_LENGTH:
        raise SourceURLRejected(f"source URL is longer than {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise SourceURLRejected("source URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for an out-of-range or non-numeric port
    except ValueError as exc:
        raise SourceURLRejected(f"source URL {url!r} is malformed: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise SourceURLRejected(f"source URL {url!r}: only http and https URLs can be polled")
    if not host:
        raise SourceURLRejected(f"source URL {url!r} has no host")
    literal = parse_address(host)
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            resolved = list(resolve(host))
        except OSError as exc:
            raise SourceURLRejected(f"host {host!r} does not resolve: {exc}") from exc
        addresses = [a for a in (parse_address(text) for text in resolved) if a is not None]
        if not addresses:
            raise SourceURLRejected(f"host {host!r} does not resolve to any IP address")
    for address in addresses:
        problem = address_problem(address, allowed)
        if problem is not None:
            what = (
                f"{address} is" if literal is not None else f"host {host!r} resolves to {address},"
            )
            raise SourceURLRejected(
                f"source URL {url!r} refused: {what} {problem}; polling it could "
                f"reach internal services (SSRF). To permit it, add its network to "
                f"{ALLOW_SETTING}."
            )
    return url
