"""Which hosts a channel URL may point at.

A webhook makes the server send requests where an admin says, so a URL is a
way into whatever the server can reach. Refused by default (a 422 naming
``url`` when the channel is written, and a refused attempt in the delivery
log if a name resolves there later): loopback, link-local (which holds the
cloud metadata service, 169.254.169.254), the known metadata names and
addresses (Google's, AWS's IPv6 one, Alibaba's 100.100.100.200),
unspecified, multicast and reserved addresses. Private networks (10/8,
172.16/12, 192.168/16, fc00::/7) are allowed: an on-premises chat server is
the common case. ``LIVEDASH_WEBHOOK_ALLOW_NETWORKS`` (CIDRs) allows more,
e.g. ``127.0.0.0/8`` for a relay on the same host (the tests use it).

Names are resolved again at every attempt and every address checked, so a
name that later resolves to a refused address is refused then. (A name that
changes between that check and the connection is not caught: run behind an
egress proxy if that matters.)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

REFUSED: tuple[tuple[Network, str], ...] = tuple(
    (ipaddress.ip_network(cidr), why)
    for cidr, why in (
        ("169.254.169.254/32", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("127.0.0.0/8", "a loopback address"),
        ("::1/128", "a loopback address"),
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("0.0.0.0/8", "an unspecified address"),
        ("::/128", "an unspecified address"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
        ("240.0.0.0/4", "a reserved address"),
    )
)
METADATA_NAMES = frozenset({"metadata", "metadata.google.internal", "instance-data", "instance-data.ec2.internal"})
MAX_URL = 2_000


def parse_networks(text: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in text.split(",") if p.strip())


def refusal(address: IP, allowed: tuple[Network, ...]) -> str | None:
    """Why this address is refused, or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in net for net in allowed if net.version == address.version):
        return None
    for net, why in REFUSED:
        if net.version == address.version and address in net:
            return f"{address} is {why} (LIVEDASH_WEBHOOK_ALLOW_NETWORKS allows more)"
    return None


def check_url(url: str, allowed: tuple[Network, ...]) -> str | None:
    """What is wrong with a channel URL (syntax, scheme, a refused literal address or name), or None."""
    if len(url) > MAX_URL:
        return f"must be at most {MAX_URL} characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must be an http:// or https:// URL"
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "must name a host"
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    if port == 0:
        return "must not use port 0"
    if host in METADATA_NAMES:
        return f"{host} is a cloud metadata name"
    if host == "localhost" or host.endswith(".localhost"):
        return _literal_refusal(ipaddress.ip_address("127.0.0.1"), allowed)
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return None
    return _literal_refusal(literal, allowed)


def _literal_refusal(address: IP, allowed: tuple[Network, ...]) -> str | None:
    why = refusal(address, allowed)
    return None if why is None else f"points at {why}"


async def resolved_refusal(url: str, allowed: tuple[Network, ...]) -> str | None:
    """At delivery: resolve the URL's host and check every address it has. None when all are fine."""
    static = check_url(url, allowed)
    if static is not None:
        return static
    parts: SplitResult = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot resolve {host}: {exc}"
    for info in infos:
        why = refusal(ipaddress.ip_address(info[4][0]), allowed)
        if why is not None:
            return f"{host} resolves to {why}"
    return None
