"""client_ip: the address the defence counts must never be one the client can choose."""

from __future__ import annotations

import pytest

from cryospy.functions.api.client_ip import (
    MAX_HEADER_CHARS,
    TrustedProxiesError,
    client_ip,
    parse_trusted_proxies,
)

PROXIES = ["10.0.0.0/8", "192.0.2.10", "fd00::/8"]


def xff(value: str, **more: str) -> dict[str, str]:
    return {"X-Forwarded-For": value, **more}


def test_no_trusted_proxies_ignores_every_header() -> None:
    headers = xff("203.0.113.9", **{"X-Real-IP": "203.0.113.8"})
    assert client_ip("10.1.2.3", headers, []) == "10.1.2.3"


def test_untrusted_peer_cannot_spoof_with_headers() -> None:
    headers = xff("10.0.0.5, 192.0.2.10", **{"X-Real-IP": "198.51.100.1"})
    assert client_ip("203.0.113.66", headers, PROXIES) == "203.0.113.66"


def test_trusted_peer_gives_the_rightmost_untrusted_hop() -> None:
    # The client prepended a fake address; its real address was appended by our proxy.
    assert client_ip("192.0.2.10", xff("1.1.1.1, 203.0.113.7"), PROXIES) == "203.0.113.7"


def test_client_cannot_hide_behind_addresses_inside_trusted_ranges() -> None:
    # Prepending an address from a trusted range must not let the walk skip past the real client.
    assert client_ip("192.0.2.10", xff("10.9.9.9, 203.0.113.7, 10.0.0.2"), PROXIES) == "203.0.113.7"


def test_chain_of_trusted_proxies_is_skipped() -> None:
    assert client_ip("10.0.0.1", xff("198.51.100.4, 10.0.0.3, 192.0.2.10"), PROXIES) == "198.51.100.4"


def test_all_hops_trusted_means_the_leftmost_is_a_lan_client() -> None:
    assert client_ip("10.0.0.1", xff("10.0.0.77, 10.0.0.2"), PROXIES) == "10.0.0.77"


def test_malformed_hop_stops_the_walk_and_falls_back_to_the_peer() -> None:
    assert client_ip("10.0.0.1", xff("garbage, 10.0.0.2", **{"X-Real-IP": "198.51.100.2"}), PROXIES) == "10.0.0.1"
    assert client_ip("10.0.0.1", xff("unknown, 10.0.0.2"), PROXIES) == "10.0.0.1"
    # Garbage to the left of the first untrusted hop is never reached.
    assert client_ip("10.0.0.1", xff("<script>, 203.0.113.7"), PROXIES) == "203.0.113.7"


@pytest.mark.parametrize("value", ["", " , ,", "not-an-ip", "999.1.1.1", "1.2.3", "[::1", "\x00", "a" * 10_000])
def test_garbage_never_raises(value: str) -> None:
    headers = {"X-Forwarded-For": value, "X-Real-IP": value}
    assert client_ip("10.0.0.1", headers, PROXIES) == "10.0.0.1"


def test_x_real_ip_is_never_believed_not_even_from_a_trusted_peer() -> None:
    # A proxy that appends to X-Forwarded-For passes the client's own X-Real-IP through: it is the client's choice.
    assert client_ip("10.0.0.1", {"X-Real-IP": "198.51.100.3"}, PROXIES) == "10.0.0.1"
    assert client_ip("10.0.0.1", xff("203.0.113.7", **{"X-Real-IP": "198.51.100.3"}), PROXIES) == "203.0.113.7"
    assert client_ip("203.0.113.1", {"X-Real-IP": "198.51.100.3"}, PROXIES) == "203.0.113.1"


def test_header_names_are_case_insensitive() -> None:
    assert client_ip("10.0.0.1", {"x-forwarded-for": "203.0.113.7"}, PROXIES) == "203.0.113.7"


def test_ports_brackets_quotes_and_ipv6() -> None:
    assert client_ip("10.0.0.1", xff('"203.0.113.7:5555"'), PROXIES) == "203.0.113.7"
    assert client_ip("10.0.0.1", xff("[2001:db8::0:1]:443, fd00::2"), PROXIES) == "2001:db8::1"
    assert client_ip("fd00::1", xff("2001:DB8::7"), PROXIES) == "2001:db8::7"
    assert client_ip("2001:db8::9", xff("198.51.100.1"), PROXIES) == "2001:db8::9"


def test_ipv4_mapped_ipv6_peer_matches_ipv4_rules() -> None:
    assert client_ip("::ffff:10.0.0.1", xff("203.0.113.7"), PROXIES) == "203.0.113.7"
    assert client_ip("::ffff:203.0.113.5", xff("198.51.100.1"), PROXIES) == "203.0.113.5"


def test_non_ip_peer_is_returned_unchanged() -> None:
    assert client_ip("unix:/run/cryospy.sock", xff("203.0.113.7"), PROXIES) == "unix:/run/cryospy.sock"
    assert client_ip("", {}, PROXIES) == ""


def test_oversized_header_never_yields_a_truncated_address() -> None:
    # Only trusted hops fit in the kept tail: the cut-off client must not be guessed from a fragment.
    tail = ", ".join(["10.0.0.2"] * (MAX_HEADER_CHARS // 10 + 10))
    headers = xff("203.0.113.77, " + tail, **{"X-Real-IP": "198.51.100.9"})
    assert client_ip("10.0.0.1", headers, PROXIES) == "10.0.0.1"


def test_bad_trusted_proxy_config_is_loud() -> None:
    with pytest.raises(TrustedProxiesError, match=r"'10.0.0.0/33'.*CIDR"):
        parse_trusted_proxies(["10.0.0.0/33"])
    with pytest.raises(TrustedProxiesError, match="list"):
        parse_trusted_proxies("10.0.0.1")  # type: ignore[arg-type]
    assert len(parse_trusted_proxies(["127.0.0.1", "10.1.2.3/8", " ::1 "])) == 3
