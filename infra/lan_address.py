"""This machine's address on the LAN: where cameras can reach the runtime and MinIO.

The address is the one the kernel would send from towards another network (a UDP "connect" sends no packet;
it only picks the route and the source address). A box with no route off itself (no network yet, or a
sandbox) has no LAN address; ``cryospy setup`` then says so and asks for ``--host``.
"""

from __future__ import annotations

import ipaddress
import socket

# Documentation addresses (RFC 5737 / RFC 3849): routed like any other destination, never answered.
_PROBES = (("192.0.2.1", socket.AF_INET), ("2001:db8::1", socket.AF_INET6))


def find_lan_address() -> str | None:
    """The source address of this machine's default route (IPv4 preferred), or None if it has none."""
    for probe, family in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                address = ipaddress.ip_address(s.getsockname()[0])
        except (OSError, ValueError):
            continue
        if not (address.is_loopback or address.is_unspecified or address.is_link_local):
            return str(address)
    return None
