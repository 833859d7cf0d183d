"""Which address a request really came from, when reverse proxies may sit in front of the API.

The auth-failure defence counts and blocks per source address, so the address must not be something the
client can choose. ``X-Forwarded-For`` is a list each proxy *appends* to; everything left of the last
proxy we trust was written by someone we do not trust. So the header is honoured only when the direct
peer is a trusted proxy, and it is read from the right, skipping our own proxies, until the first address
that is not ours: that is the client as our outermost proxy saw it.

An empty list of trusted proxies trusts nobody: the header is ignored and the peer address is used (the
original's release-build semantics; its Docker image, built without the release tag, trusted everybody,
which let any client pick the address it was blocked under).

``X-Real-IP`` is never read. A proxy that appends to ``X-Forwarded-For`` usually passes a client's own
``X-Real-IP`` through untouched, so believing it let any client choose the address it was counted under
(and get a neighbour throttled). One header, one rule, for the device API and the dashboard alike: the
runtime's front door (``infra/front_door.py``) applies it once per request.

Header values never raise: garbage, ports, brackets, quotes and IPv6 zone ids are tolerated. The trusted
list is configuration and is validated loudly: call :func:`parse_trusted_proxies` at start-up.

Errors::

    FunctionsError
    └── TrustedProxiesError   an entry of trusted_proxies is neither an IP address nor a CIDR range
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence
from functools import lru_cache

from cryospy.functions.errors import FunctionsError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A forwarded header longer than this is not from any proxy chain we run; only its tail is read.
MAX_HEADER_CHARS = 4096
MAX_HOPS = 32


class TrustedProxiesError(FunctionsError):
    """An entry of ``trusted_proxies`` is not an IP address or CIDR; the message names it and the fix."""


@lru_cache(maxsize=32)
def _parse_cached(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    networks: list[IPNetwork] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except (ValueError, TypeError, AttributeError) as exc:
            raise TrustedProxiesError(
                f"trusted_proxies entry {entry!r} is not an IP address or CIDR range ({exc}); use e.g. "
                "'127.0.0.1', '10.0.0.0/8' or '::1', or leave the list empty to trust no proxy") from None
        networks.append(network)
    return tuple(networks)


def parse_trusted_proxies(entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """Validate and parse the configured proxies (IPs or CIDRs); raises :class:`TrustedProxiesError`."""
    if isinstance(entries, str):
        raise TrustedProxiesError(f"trusted_proxies must be a list of addresses, not the string {entries!r}; "
                                  f"write [{entries!r}]")
    return _parse_cached(tuple(entries))


@functools.lru_cache(maxsize=1024)
def _parse_address(text: str) -> IPAddress | None:
    """One address from a header or the peer; ``None`` for anything that is not an IP.

    Accepts what proxies actually write: ``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``, quoted
    values, and zone ids. IPv4-mapped IPv6 (``::ffff:1.2.3.4``, from dual-stack sockets) becomes IPv4 so it
    matches IPv4 rules and is counted as the same client.
    """
    value = text.strip().strip('"').strip()
    if not value or len(value) > 64:
        return None
    if value.startswith("["):
        value, closed, rest = value[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            return None
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup: frameworks differ in how they spell header names."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == lowered), None)
    return value if isinstance(value, str) else None


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def is_trusted_proxy(remote_addr: str, trusted_proxies: Sequence[str]) -> bool:
    """True when the direct peer is one of the configured proxies (whose forwarded headers are believed)."""
    networks = parse_trusted_proxies(trusted_proxies)
    peer = _parse_address(remote_addr) if isinstance(remote_addr, str) else None
    return peer is not None and bool(networks) and _trusted(peer, networks)


def client_ip(remote_addr: str, headers: Mapping[str, str], trusted_proxies: Sequence[str]) -> str:
    """The client's address: ``remote_addr`` unless it is a trusted proxy that says otherwise.

    When the peer is trusted: walk ``X-Forwarded-For`` from the right, skip trusted hops, and return the
    first untrusted address. If every hop is trusted the leftmost is the client (a LAN client inside a
    trusted range). If the walk meets an entry that is not an address, nothing left of it can be
    attributed, so the peer (our proxy) is the best we know. Addresses come back normalised
    (``::ffff:1.2.3.4`` → ``1.2.3.4``, IPv6 compressed); a ``remote_addr`` that is not an IP is returned
    unchanged.
    """
    networks = parse_trusted_proxies(trusted_proxies)
    peer = _parse_address(remote_addr) if isinstance(remote_addr, str) else None
    if peer is None or not networks or not _trusted(peer, networks):
        return str(peer) if peer is not None else remote_addr

    forwarded = _header(headers, "X-Forwarded-For")
    if forwarded:
        truncated = len(forwarded) > MAX_HEADER_CHARS
        pieces = forwarded[-MAX_HEADER_CHARS:].split(",")
        if truncated:
            pieces = pieces[1:]  # the first piece may be the tail of a cut-off address
        hops = [hop for hop in pieces if hop.strip()]
        if len(hops) > MAX_HOPS:
            hops, truncated = hops[-MAX_HOPS:], True
        leftmost: IPAddress | None = None
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                leftmost = None
                break
            if not _trusted(address, networks):
                return str(address)
            leftmost = address
        # All hops were ours: the leftmost is the client, unless the list was cut and the client lost.
        if leftmost is not None and not truncated:
            return str(leftmost)

    return str(peer)
