"""Outbound HTTP to addresses an admin typed in: callbacks and chat notifications.

A URL is someone else's to choose, so a request must never reach what only the server can
reach (SSRF): its loopback, the private network, link-local and cloud metadata addresses.

- The host is resolved once, through a resolver seam (`socket.getaddrinfo` by default), and
  every address it resolves to is checked; one refused address refuses the request.
- The connection goes to an address that was checked: the socket is opened to the IP, never
  to the name again, so a second DNS answer cannot swap in another address (DNS rebinding).
  The request still carries the name in its Host header, and TLS sends the name as SNI and
  verifies the certificate against the name (httpcore does both with the origin's host).
- No proxy from the environment, no redirects, connect and read timeouts, and only the first
  HITL_OUTBOUND_MAX_RESPONSE_BYTES of an answer are read.

HITL_OUTBOUND_ALLOW lists hosts and CIDRs let through anyway (on-premise receivers, tests).
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import ssl
import time
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpcore
import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the IP addresses to try, as text.
Resolver = Callable[[str, int], list[str]]

# Cloud metadata and platform services that sit on addresses `is_global` does not catch
# (Azure's wire server is a public address), or that deserve a name in the refusal.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack ...
        "169.254.170.2",  # AWS ECS task metadata
        "168.63.129.16",  # Azure wire server
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud
        "fd00:ec2::254",  # AWS over IPv6
    )
)
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


class OutboundError(Exception):
    """A request that got no HTTP answer: refused here, unreachable, or timed out."""


class Refused(OutboundError):
    """The URL or an address it resolves to may not be reached from here."""


@dataclass(frozen=True)
class Answer:
    status_code: int
    # The raw Retry-After header, if any.
    retry_after: str | None
    # The start of the body, decoded leniently.
    excerpt: str


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OutboundError(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in network for network in NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def why_refused(ip: IPAddress) -> str | None:
    """Why `ip` may not be reached from here, or None if it is a public address."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = why_refused(embedded)
            return f"{inner} (inside {ip})" if inner else None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    for refused, what in (
        (ip.is_unspecified, "the unspecified address"),
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_private, "a private address"),
        (ip.is_reserved, "a reserved address"),
        (not ip.is_global, "not a public address"),
    ):
        if refused:
            return f"{ip} is {what}"
    return None


def _allowed_entries() -> tuple[set[str], list[ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    names: set[str] = set()
    networks = []
    for entry in settings.HITL_OUTBOUND_ALLOW:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.lower().rstrip("."))
    return names, networks


def host_allowed(host: str) -> bool:
    """Whether HITL_OUTBOUND_ALLOW names this host, or holds it as an IP literal."""
    names, networks = _allowed_entries()
    host = host.lower().rstrip(".")
    if host in names:
        return True
    literal = _ip_literal(host)
    return literal is not None and any(literal in network for network in networks)


def address_allowed(ip: IPAddress) -> bool:
    _, networks = _allowed_entries()
    return any(ip in network for network in networks)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def checked_addresses(host: str, port: int, resolver: Resolver) -> list[str]:
    """The addresses to connect to for `host`, each one checked; Refused if any is refused."""
    if host_allowed(host):
        literal = _ip_literal(host)
        return [str(literal)] if literal else resolver(host, port)
    literal = _ip_literal(host)
    addresses = [str(literal)] if literal else resolver(host, port)
    if not addresses:
        raise OutboundError(f"{host} resolves to no address")
    for text in addresses:
        ip = ipaddress.ip_address(text.split("%")[0])
        reason = why_refused(ip)
        if reason and not address_allowed(ip):
            raise Refused(f"refused {host}: {reason}")
    return addresses


class CheckedBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, connecting only to checked addresses of the origin's host.

    httpcore calls `connect_tcp` with the URL's host and afterwards starts TLS itself with
    `server_hostname` set to that same host, so SNI and the certificate check use the name
    while the socket goes to the IP chosen here.
    """

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        for address in checked_addresses(host, port, self.resolver):
            try:
                return self.backend.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> typing.NoReturn:
        raise Refused("unix sockets are not reachable from here")

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


class CheckedTransport(httpx.HTTPTransport):
    """httpx's transport on a pool that connects through `CheckedBackend`, without proxies."""

    def __init__(self, resolver: Resolver, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=4,
            network_backend=CheckedBackend(resolver),
        )


def check_url(url: str) -> str:
    """`url` if it may be an endpoint: http(s), no credentials, https unless allowed."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise Refused("the URL must start with https:// (or http:// for an allowed host)")
    host = parts.hostname
    if not host:
        raise Refused("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise Refused("the URL may not carry credentials (user:password@)")
    if parts.scheme == "http" and not host_allowed(host):
        raise Refused(f"plain http is only allowed to hosts in HITL_OUTBOUND_ALLOW, not {host}")
    literal = _ip_literal(host)
    if literal is not None and not address_allowed(literal):
        reason = why_refused(literal)
        if reason:
            raise Refused(f"refused {host}: {reason}")
    if port == 0:
        raise Refused("the URL's port must not be 0")
    return parts._replace(fragment="").geturl()


def post(
    url: str,
    *,
    body: bytes,
    headers: dict[str, str],
    resolver: Resolver | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> Answer:
    """POST `body` to `url`, checked as above. OutboundError when no HTTP answer came back."""
    check_url(url)
    timeout = httpx.Timeout(
        connect=settings.HITL_OUTBOUND_CONNECT_TIMEOUT,
        read=settings.HITL_OUTBOUND_READ_TIMEOUT,
        write=settings.HITL_OUTBOUND_READ_TIMEOUT,
        pool=settings.HITL_OUTBOUND_CONNECT_TIMEOUT,
    )
    transport = CheckedTransport(resolver or system_resolver, ssl_context)
    limit = settings.HITL_OUTBOUND_MAX_RESPONSE_BYTES
    # The body has as long as one read would: a receiver dripping bytes cannot hold us.
    deadline = time.monotonic() + settings.HITL_OUTBOUND_READ_TIMEOUT
    try:
        with (
            httpx.Client(
                transport=transport, timeout=timeout, follow_redirects=False, trust_env=False
            ) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            received = b""
            for chunk in response.iter_raw():
                received += chunk
                if len(received) >= limit or time.monotonic() > deadline:
                    break
            return Answer(
                status_code=response.status_code,
                retry_after=response.headers.get("retry-after"),
                excerpt=received[:limit].decode("utf-8", errors="replace"),
            )
    except OutboundError:
        raise
    except httpx.TimeoutException as exc:
        raise OutboundError(f"timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise OutboundError(f"{type(exc).__name__}: {exc}") from None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A Retry-After header as seconds from `now` (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())
