"""The dashboard's login state on both of its stores: sessions, the login limiter and one-time login links in
this process's memory / the data directory (the embedded default) and in a real PostgreSQL
(tests/postgres_server.py), where every runtime of a deployment shares them. ``pair`` opens the store twice:
with PostgreSQL the second opening is another runtime (its own pool, no shared Python object); embedded, it is
the same object, since memory is one runtime's alone. Each contract test then acts on one and checks on the
other, which for PostgreSQL is the property that matters: what one runtime does, the next request on the
other sees."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.web.login_limiter import LoginLimiter, LoginThrottled
from cryospy.web.login_links import LinkInvalid, LoginLinks
from cryospy.web.pg_login_state import PostgresLoginLimiter, PostgresLoginLinks, PostgresSessions
from cryospy.web.sessions import MemorySessions
from tests.support import ManualClock as Clock


@pytest.fixture(params=["embedded", "postgres"])
def url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("postgres").fresh_url() if request.param == "postgres" else None


@pytest.fixture
def pair(url: str | None, tmp_path: Path) -> Iterator[Callable[..., tuple[Any, Any]]]:
    """``pair(kind, **options)``: two openings of the ``kind`` store ("sessions", "limiter", "links")."""
    key, pools = os.urandom(32), []

    def open_pair(kind: str, **options: Any) -> tuple[Any, Any]:
        if url is None:
            one = {"sessions": lambda: MemorySessions(), "limiter": lambda: LoginLimiter(**options),
                   "links": lambda: LoginLinks(tmp_path / "links", **options)}[kind]()
            return one, (LoginLinks(tmp_path / "links", **options) if kind == "links" else one)
        stores = []
        for _ in range(2):
            pools.append(open_pool(url, max_size=4))
            cls = {"sessions": PostgresSessions, "limiter": PostgresLoginLimiter, "links": PostgresLoginLinks}[kind]
            stores.append(cls(pools[-1], lambda: key, **options))
        return stores[0], stores[1]
    yield open_pair
    for pool in pools:
        pool.close()


# -- sessions -------------------------------------------------------------------------------------------------
def test_a_session_started_on_one_runtime_is_seen_and_ended_on_the_other(pair) -> None:
    a, b = pair("sessions")
    token, record = a.start("admin", expires=2000.0, now=1000.0)
    seen = b.get(token, 1500.0)
    assert seen is not None and (seen.account, seen.expires, seen.csrf) == ("admin", 2000.0, record.csrf)
    assert len(record.csrf) >= 32 and record.csrf != token
    assert b.get(token + "x", 1500.0) is None and b.get("", 1500.0) is None
    b.end(token)                                            # logging out on B
    assert a.get(token, 1500.0) is None                     # A refuses the cookie at its next request
    b.end(token)                                            # twice is harmless


def test_expiry_is_judged_at_every_lookup_and_expired_sessions_are_pruned(pair) -> None:
    a, b = pair("sessions")
    old, _ = a.start("admin", expires=1100.0, now=1000.0)
    a.start("admin", expires=1200.0, now=1000.0)
    assert b.get(old, 1100.0) is not None and b.get(old, 1100.5) is None
    b.start("admin", expires=5000.0, now=2000.0)            # a login prunes what expired before it
    assert a.count() == 1


def test_ending_an_account_ends_its_sessions_everywhere_but_the_one_kept(pair) -> None:
    a, b = pair("sessions")
    kept, _ = a.start("admin", 9000.0, 1000.0)
    other, _ = b.start("admin", 9000.0, 1000.0)
    third, _ = a.start("admin", 9000.0, 1000.0)
    viewer, _ = b.start("teen", 9000.0, 1000.0)
    assert b.end_account("admin", keep=kept) == 2           # e.g. the passphrase changed on B
    assert a.get(kept, 1000.0) is not None and a.get(other, 1000.0) is None and a.get(third, 1000.0) is None
    assert a.get(viewer, 1000.0) is not None
    assert a.end_account("teen") == 1 and b.get(viewer, 1000.0) is None   # the account removed on A
    assert a.end_account("nobody") == 0


def test_the_second_factor_flag_travels_with_the_session(pair) -> None:
    a, b = pair("sessions")
    token, record = a.start("teen", 9000.0, 1000.0, must_enrol=True)
    assert record.must_enrol and b.get(token, 1000.0).must_enrol   # B sends it to enrolment too
    b.enrolled(token)
    after = a.get(token, 1000.0)
    assert after is not None and not after.must_enrol and after.csrf == record.csrf
    b.enrolled("unknown")                                           # nothing to do


def test_a_pending_login_is_shared_and_never_a_session(pair) -> None:
    a, b = pair("sessions")
    token = a.start_pending("admin", "dashboard", 1300.0, 1000.0)
    pending = b.get_pending(token, 1200.0)
    assert pending is not None and (pending.account, pending.via) == ("admin", "dashboard")
    assert b.get(token, 1200.0) is None                             # the code cookie opens no session
    assert b.get_pending(token, 1300.5) is None                     # five minutes, then gone
    b.end_pending(token)
    assert a.get_pending(token, 1200.0) is None
    session, _ = a.start("admin", 9000.0, 1000.0)
    assert b.get_pending(session, 1000.0) is None                   # nor the other way round
    assert a.end_account("admin") == 1                              # pending logins are not sessions


def test_the_sessions_table_holds_no_usable_token_and_no_account_name(postgres) -> None:
    url, key = postgres.fresh_url(), os.urandom(32)
    with open_pool(url, max_size=2) as pool:
        store = PostgresSessions(pool, lambda: key)
        token, record = store.start("garden-viewer", 9000.0, 1000.0, must_enrol=True)
        pending = store.start_pending("garden-viewer", "dashboard", 1300.0, 1000.0)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT * FROM dashboard_sessions").fetchall()
        dump = repr(rows).encode() + b"".join(bytes(c) for row in rows for c in row if isinstance(c, bytes))
        for secret in (token, pending, record.csrf, "garden-viewer"):
            for form in (secret.encode(), secret.encode().hex().encode()):
                assert form not in dump, secret
        # A record copied under another token's hash does not open (the hash is bound into it): no session.
        other, _ = store.start("admin", 9000.0, 1000.0)
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE dashboard_sessions SET doc = (SELECT doc FROM dashboard_sessions WHERE "
                         "token = %s) WHERE token = %s", (store._sealer.pseudonym("session", token),
                                                          store._sealer.pseudonym("session", other)))
        assert store.get(other, 1000.0) is None and store.get(token, 1000.0) is not None
        # Without the key, the table's contents are no help: another key finds nothing.
        assert PostgresSessions(pool, lambda: os.urandom(32)).get(token, 1000.0) is None


# -- the login limiter ----------------------------------------------------------------------------------------
def test_per_client_budget_is_one_across_runtimes_and_a_success_gives_the_claim_back(pair) -> None:
    a, b = pair("limiter", per_client=3, clock=Clock())
    right = a.claim("203.0.113.1")
    b.succeeded(right)
    a.claim("203.0.113.1")
    b.claim("203.0.113.1")
    a.claim("203.0.113.1")
    with pytest.raises(LoginThrottled, match=r"from your address.*login-link") as caught:
        b.claim("203.0.113.1")                              # the third failure was on A: B refuses the fourth
    assert not caught.value.everyone and 299 < caught.value.wait <= 300
    b.claim("203.0.113.2")
    assert a.tracked() == b.tracked() == 2


def test_ipv6_clients_count_per_64_on_both_stores(pair) -> None:
    a, b = pair("limiter", per_client=2, clock=Clock())
    a.claim("2001:db8:1:2::1")
    b.claim("2001:db8:1:2::ffff")
    with pytest.raises(LoginThrottled):
        a.claim("2001:db8:1:2:abcd::9")
    b.claim("2001:db8:1:3::1")


def test_the_global_backoff_is_one_for_every_runtime(pair) -> None:
    clock = Clock()
    a, b = pair("limiter", global_free=3, max_delay=60, clock=clock)
    for i in range(3):
        (a, b)[i % 2].claim(f"10.0.0.{i}")
    waits = []
    for i in range(8):
        with pytest.raises(LoginThrottled, match="from anywhere") as caught:
            (a, b)[i % 2].claim(f"10.1.0.{i}")
        waits.append(caught.value.wait)
        clock.now += caught.value.wait
        (b, a)[i % 2].claim(f"10.2.0.{i}")
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]


def test_a_login_clears_its_clients_failures_but_not_the_global_count(pair) -> None:
    clock = Clock()
    a, b = pair("limiter", per_client=3, global_free=4, max_delay=60, clock=clock)
    a.claim("198.51.100.7")
    b.claim("198.51.100.7")
    b.succeeded(a.claim("198.51.100.7"))     # the real user, after two typos
    assert a.tracked() == 0
    b.claim("198.51.100.8")
    b.claim("198.51.100.9")
    with pytest.raises(LoginThrottled, match="from anywhere"):
        a.claim("198.51.100.10")             # the two typos still count globally: 4 failures on record


def test_old_attempts_are_pruned(pair) -> None:
    clock = Clock()
    a, b = pair("limiter", window=300, global_window=3600, clock=clock)
    for i in range(10):
        (a, b)[i % 2].claim(f"198.51.100.{i}")
    assert b.tracked() == 10
    clock.now += 301
    assert a.tracked() == 0
    clock.now += 3300
    a.claim("198.51.100.99")
    a.claim("198.51.100.98")                 # all 10 fell out of the global window: no backoff


def test_racing_guesses_from_two_runtimes_get_exactly_one_budget(postgres) -> None:
    url, key = postgres.fresh_url(), os.urandom(32)
    with open_pool(url, max_size=6) as one, open_pool(url, max_size=6) as two:
        runtimes = [PostgresLoginLimiter(pool, lambda: key, per_client=5) for pool in (one, two)]
        allowed, start = [], threading.Barrier(12)

        def guess(n: int) -> None:
            start.wait()
            try:
                runtimes[n % 2].claim("192.0.2.66")
                allowed.append(n)
            except LoginThrottled:
                pass
        threads = [threading.Thread(target=guess, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(allowed) == 5
        with psycopg.connect(url) as conn:
            clients = {bytes(r[0]) for r in conn.execute("SELECT client FROM login_attempts")}
        assert b"192.0.2.66" not in b"".join(clients) and len(clients) == 1   # a keyed hash, not the address


# -- login links ----------------------------------------------------------------------------------------------
def test_a_link_made_for_one_runtime_works_once_on_the_other(pair) -> None:
    clock = Clock()
    a, b = pair("links", clock=clock)
    token = a.issue(minutes=10, account="teen")
    b.check(token)
    assert b.redeem(token) == "teen"
    with pytest.raises(LinkInvalid, match="unknown, used or expired"):
        a.redeem(token)
    with pytest.raises(LinkInvalid):
        a.check(token)
    late = b.issue(minutes=1)
    clock.now += 61
    with pytest.raises(LinkInvalid):
        a.check(late)
    with pytest.raises(LinkInvalid):
        a.redeem(late)


@pytest.mark.parametrize("token", ["", "../../deployment.json", "a" * 42, "a" * 44, None, "x" * 10_000])
def test_malformed_link_tokens_are_invalid_on_both_stores(pair, token: object) -> None:
    a, _ = pair("links")
    with pytest.raises(LinkInvalid):
        a.redeem(token)
    with pytest.raises(LinkInvalid):
        a.check(token)


def test_racing_redeemers_on_two_runtimes_get_the_link_once(postgres) -> None:
    url, key = postgres.fresh_url(), os.urandom(32)
    with open_pool(url, max_size=6) as one, open_pool(url, max_size=6) as two:
        runtimes = [PostgresLoginLinks(pool, lambda: key) for pool in (one, two)]
        token = runtimes[0].issue()
        winners, start = [], threading.Barrier(10)

        def redeem(n: int) -> None:
            start.wait()
            with contextlib.suppress(LinkInvalid):
                winners.append(runtimes[n % 2].redeem(token))
        threads = [threading.Thread(target=redeem, args=(n,)) for n in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert winners == ["admin"]
        with psycopg.connect(url) as conn:
            runtimes[0].issue(account="teen")
            dump = b"".join(bytes(c) for row in conn.execute("SELECT token, doc FROM login_links") for c in row)
        assert token.encode() not in dump and b"teen" not in dump
