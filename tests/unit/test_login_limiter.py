"""The dashboard's login limiter and one-time login links, on an injected clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryospy.web.login_limiter import LoginLimiter, LoginThrottled
from cryospy.web.login_links import LinkInvalid, LoginLinks
from tests.support import ManualClock as Clock


def test_per_client_limit_counts_the_claim_and_a_success_gives_it_back() -> None:
    limiter = LoginLimiter(per_client=3, clock=Clock())
    right = limiter.claim("203.0.113.1")
    limiter.succeeded(right)
    for _ in range(3):
        limiter.claim("203.0.113.1")
    with pytest.raises(LoginThrottled, match=r"from your address.*login-link") as caught:
        limiter.claim("203.0.113.1")
    assert not caught.value.everyone and 299 < caught.value.wait <= 300
    limiter.claim("203.0.113.2")                                         # another client is judged on its own


def test_ipv6_clients_count_per_64() -> None:
    limiter = LoginLimiter(per_client=2, clock=Clock())
    limiter.claim("2001:db8:1:2::1")
    limiter.claim("2001:db8:1:2::ffff")
    with pytest.raises(LoginThrottled):
        limiter.claim("2001:db8:1:2:abcd::9")
    limiter.claim("2001:db8:1:3::1")


def test_global_backoff_doubles_after_the_free_allowance() -> None:
    clock = Clock()
    limiter = LoginLimiter(global_free=3, max_delay=60, clock=clock)
    for i in range(3):
        limiter.claim(f"10.0.0.{i}")
    waits = []
    for i in range(8):
        with pytest.raises(LoginThrottled, match="from anywhere") as caught:
            limiter.claim(f"10.1.0.{i}")
        waits.append(caught.value.wait)
        clock.now += caught.value.wait
        limiter.claim(f"10.2.0.{i}")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_old_entries_are_pruned() -> None:
    clock = Clock()
    limiter = LoginLimiter(window=300, global_window=3600, clock=clock)
    for i in range(10):
        limiter.claim(f"198.51.100.{i}")
    assert limiter.tracked() == 10
    clock.now += 301
    assert limiter.tracked() == 0
    clock.now += 3300
    limiter.claim("198.51.100.99")
    assert len(limiter._everyone) == 1


def test_a_link_works_once_and_only_until_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    links = LoginLinks(tmp_path / "links", clock=clock)
    token = links.issue(minutes=10)
    assert [p.stat().st_mode & 0o777 for p in (tmp_path / "links").iterdir()] == [0o600]
    assert token not in "".join(p.name + p.read_text() for p in (tmp_path / "links").iterdir())
    links.check(token)
    links.redeem(token)
    with pytest.raises(LinkInvalid, match="unknown, used or expired"):
        links.redeem(token)
    late = links.issue(minutes=1)
    clock.now += 61
    with pytest.raises(LinkInvalid):
        links.redeem(late)
    links.issue()
    assert len(list((tmp_path / "links").iterdir())) == 1              # the expired claim was pruned


@pytest.mark.parametrize("token", ["", "../../deployment.json", "a" * 42, "a" * 44, None])
def test_malformed_tokens_are_invalid_without_touching_the_disk(tmp_path: Path, token: object) -> None:
    with pytest.raises(LinkInvalid):
        LoginLinks(tmp_path / "missing").redeem(token)  # type: ignore[arg-type]
