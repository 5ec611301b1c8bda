"""Where the fetcher may connect: the SSRF guard applied at connect time.

``aggregator.ssrf`` checks a source URL once, when it is added through the admin API. That does
not cover a publisher that later redirects to an internal address, or a name that resolved to a
public address when it was added and resolves to ``127.0.0.1`` or ``169.254.169.254`` now (DNS
rebinding). Either would make the daemon fetch from inside its own network and could publish
what it got there. :class:`DestinationPolicy` judges every address the fetcher is about to
connect to:

* a host named by a source of the config file is trusted: the operator chose it, and feeds on
  an intranet or on 127.0.0.1 are legitimate there;
* any other host (admin-API sources, redirect targets, a source's URL after a permanent
  redirect) must be a public address, or lie in a network of ``[admin] allow_networks``.

With the aiohttp transport the check sits in the connector's resolver
(:class:`GuardedResolver`), so the addresses checked are the addresses connected to; literal IP
hosts never reach a resolver and are checked by the fetcher for every hop. httpx's own transport
has no resolver hook: there the fetcher resolves and checks a name before sending, which leaves
a window between the check and the transport's own lookup.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aggregator.ssrf import ALLOW_SETTING, Network, address_problem, parse_address, parse_networks

if TYPE_CHECKING:  # pragma: no cover
    from aggregator.settings import Settings

try:
    from aiohttp.abc import AbstractResolver, ResolveResult
    from aiohttp.resolver import DefaultResolver
except ImportError:  # pragma: no cover - aiohttp ships with httpx-aiohttp
    AbstractResolver = object  # type: ignore[assignment,misc]


class DestinationRefused(OSError):
    """A connection the policy refused; the message names the host, the address and why."""


@dataclass(frozen=True, slots=True)
class DestinationPolicy:
    """Which hosts may be internal (``trusted_hosts``, lower case) and which networks are
    allowed anyway (``allowed``); every other destination must be publicly routable."""

    trusted_hosts: frozenset[str] = frozenset()
    allowed: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> DestinationPolicy:
        """Trust the hosts of the config file's sources; allow ``[admin] allow_networks``."""
        return cls.for_urls((s.url for s in settings.sources), settings.admin.allow_networks)

    @classmethod
    def for_urls(cls, urls: Iterable[str], allow_networks: Iterable[str] = ()) -> DestinationPolicy:
        hosts = set()
        for url in urls:
            try:
                host = urlsplit(url).hostname
            except ValueError:
                continue
            if host:
                hosts.add(host.lower())
        return cls(frozenset(hosts), parse_networks(allow_networks))

    def trusts(self, host: str) -> bool:
        """True when ``host`` may resolve to anything (a config-file source's host)."""
        return host.lower().strip("[]") in self.trusted_hosts

    def problem(self, host: str, address: str) -> str | None:
        """Why connecting to ``address`` (which ``host`` resolved to, or is) is refused, or None."""
        if self.trusts(host):
            return None
        parsed = parse_address(address.split("%", 1)[0])  # drop an IPv6 zone id
        if parsed is None:
            return f"{host} resolved to {address!r}, which is not an IP address"
        reason = address_problem(parsed, self.allowed)
        if reason is None:
            return None
        what = f"{host} is" if parse_address(host.strip("[]")) is not None else (
            f"{host} resolves to {address},"
        )  # fmt: skip
        return (
            f"refused to connect: {what} {reason} (not publicly routable). Only hosts of "
            f"config-file sources may be internal; to permit it, add its network to "
            f"{ALLOW_SETTING}"
        )

    def literal_problem(self, host: str) -> str | None:
        """``problem`` for a host that is a literal IP address; None for a name (the resolver
        checks names)."""
        if self.trusts(host):  # the common case, checked first: no address parsing per fetch
            return None
        bare = host.strip("[]")
        return self.problem(host, bare) if parse_address(bare) is not None else None

    def keep(self, host: str, addresses: Sequence[str]) -> list[int]:
        """Indexes of the usable ``addresses`` of ``host``; raises ``DestinationRefused``
        (naming the first refused address) when there is none."""
        problems = [self.problem(host, a) for a in addresses]
        kept = [i for i, p in enumerate(problems) if p is None]
        if not kept:
            first = next((p for p in problems if p is not None), None)
            raise DestinationRefused(first or f"{host} resolved to no address")
        return kept

    async def check_name(self, host: str) -> None:
        """Resolve ``host`` and refuse it when none of its addresses is usable (for transports
        without a resolver hook); a lookup failure is left to the transport to report."""
        if self.trusts(host) or parse_address(host.strip("[]")) is not None:
            return
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, None, type=socket.SOCK_STREAM
            )
        except OSError:
            return
        self.keep(host, [str(info[4][0]) for info in infos])


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that drops the addresses ``policy`` refuses (see the module doc)."""

    def __init__(self, policy: DestinationPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results: list[ResolveResult] = await self._inner.resolve(host, port, family)
        if self._policy.trusts(host):
            return results
        return [results[i] for i in self._policy.keep(host, [r["host"] for r in results])]

    async def close(self) -> None:
        await self._inner.close()
