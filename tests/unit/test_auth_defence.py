"""AuthDefence: sliding windows, thresholds, persisted rate limits and exact counts under concurrency; the
tests taking the ``defence`` fixture run on the SQLite store and on PostgreSQL, and the last ones check that
runtimes sharing PostgreSQL share one window.

Time is an injected clock (a mutable float), never a sleep.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.devices.auth_defence import (
    AuthDefence,
    AuthDefenceError,
    AuthDefenceSettings,
    AuthDefenceSettingsError,
    FailureDecision,
    FailureDefence,
    address_key,
)
from cryospy.functions.devices.pg_auth_defence import PostgresAuthDefence

MIN = 60.0
T0 = 1_750_000_000.0
KEY = os.urandom(32)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += minutes * MIN


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "auth.sqlite"


@pytest.fixture(params=["embedded", "postgres"])
def defence(request: pytest.FixtureRequest, db_path: Path, clock: Clock) -> Iterator[FailureDefence]:
    """The SQLite store, and the one in a real PostgreSQL (tests/postgres_server.py) that runtimes share: the
    tests that take this fixture hold both to the same rules."""
    if request.param == "postgres":
        d = _pg_defence(request.getfixturevalue("postgres").fresh_url(), clock, AuthDefenceSettings())
        yield d
        d.close()
    else:
        with AuthDefence(db_path, AuthDefenceSettings(), clock=clock) as d:
            yield d


def _pg_defence(url: str, clock: Clock, settings: AuthDefenceSettings, key: bytes = KEY) -> PostgresAuthDefence:
    return PostgresAuthDefence(open_pool(url, max_size=2), lambda: key, settings, clock=clock)


def fail(d: FailureDefence, n: int, device: str | None = "cam1", ip: str = "203.0.113.1",
         known: bool = True) -> list[FailureDecision]:
    return [d.record_failure(device, ip, known_device=known) for _ in range(n)]


# -- windows --------------------------------------------------------------------------------------------

def test_window_slides_with_the_clock(db_path: Path, clock: Clock) -> None:
    settings = AuthDefenceSettings(time_window_minutes=10, notification_threshold=0)
    with AuthDefence(db_path, settings, clock=clock) as d:
        fail(d, 3)                       # at t=0
        clock.advance(6)
        assert fail(d, 1)[0].device_failures == 4
        clock.advance(4)                 # t=10: the first three are exactly one window old, so they are out
        decision = fail(d, 1)[0]
        assert (decision.device_failures, decision.ip_failures) == (2, 2)
        clock.advance(10)                # t=20: everything earlier is out
        assert fail(d, 1)[0].device_failures == 1


def test_device_failures_are_counted_and_nothing_says_disable(defence: AuthDefence) -> None:
    decisions = fail(defence, 15)
    assert [d.device_failures for d in decisions] == list(range(1, 16))
    assert not any(hasattr(d, "disable_device") for d in decisions)   # only an admin disables a device


def test_the_removed_auto_disable_setting_is_refused_with_what_changed() -> None:
    with pytest.raises(AuthDefenceSettingsError, match=r"auto_disable_threshold was removed: failed logins no "
                                                       r"longer disable a device.*Remove the key"):
        AuthDefenceSettings.from_dict({"auto_disable_threshold": 10})


def test_clear_device_starts_the_notification_afresh(defence: AuthDefence) -> None:
    assert fail(defence, 5)[-1].notify
    defence.clear_device("cam1")                                    # admin rotated the secret
    assert [d.notify for d in fail(defence, 5)] == [False] * 4 + [True]


def test_notify_at_threshold_then_rate_limited(defence: AuthDefence, clock: Clock) -> None:
    flags = [d.notify for d in fail(defence, 8)]
    assert flags == [False] * 4 + [True] + [False] * 3              # 5th failure, once
    clock.advance(29)
    assert not fail(defence, 1)[0].notify                           # 29 min < 30 min interval
    clock.advance(1)
    assert fail(defence, 1)[0].notify                               # exactly 30 min later: allowed


def test_notify_rate_limit_survives_a_restart(db_path: Path, clock: Clock) -> None:
    with AuthDefence(db_path, AuthDefenceSettings(), clock=clock) as first:
        assert [d.notify for d in fail(first, 5)][-1]
    clock.advance(10)
    with AuthDefence(db_path, AuthDefenceSettings(), clock=clock) as second:
        decision = fail(second, 1)[0]
        assert decision.device_failures == 6                         # the window survived too
        assert not decision.notify
        clock.advance(20)
        assert fail(second, 1)[0].notify


def test_released_notification_can_be_claimed_again(defence: AuthDefence) -> None:
    assert fail(defence, 5)[-1].notify
    defence.release_notification("cam1")                            # the mail could not be sent
    assert fail(defence, 1)[0].notify


def test_zero_thresholds_turn_reactions_off(db_path: Path, clock: Clock) -> None:
    settings = AuthDefenceSettings(notification_threshold=0)
    with AuthDefence(db_path, settings, clock=clock) as d:
        decisions = fail(d, 19)
    assert not any(x.notify for x in decisions)


# -- unknown ids and addresses --------------------------------------------------------------------------

def test_unknown_ids_count_per_ip_only(defence: AuthDefence) -> None:
    for i in range(5):
        decision = defence.record_failure(f"guess-{i}", "198.51.100.7", known_device=False)
        assert decision.device_failures == 0 and not decision.notify
    assert decision.ip_failures == 5
    snap = defence.snapshot()
    assert snap["devices"] == []                                    # invented ids are never stored
    assert snap["ips"][0]["ip"] == "198.51.100.7" and snap["ips"][0]["failures"] == 5


def test_device_failures_from_many_ips_add_up(defence: AuthDefence) -> None:
    decisions = [defence.record_failure("cam1", f"203.0.113.{i}", known_device=True) for i in range(10)]
    assert decisions[-1].device_failures == 10 and decisions[-1].ip_failures == 1


def test_ip_blocked_at_limit_and_released_by_the_window(defence: AuthDefence, clock: Clock) -> None:
    ip = "198.51.100.8"
    decisions = [defence.record_failure(None, ip, known_device=False) for _ in range(20)]
    assert [d.block_ip for d in decisions] == [False] * 19 + [True]
    assert defence.is_blocked(ip)
    assert not defence.is_blocked("198.51.100.9")
    clock.advance(60)
    assert not defence.is_blocked(ip)


def test_ipv6_is_counted_per_64(defence: AuthDefence) -> None:
    for i in range(20):
        defence.record_failure(None, f"2001:db8:1:2::{i:x}", known_device=False)
    assert defence.is_blocked("2001:db8:1:2:ffff::1")
    assert not defence.is_blocked("2001:db8:1:3::1")
    assert address_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("not an ip") == "not an ip"


def test_success_does_not_wash_away_failures(defence: AuthDefence) -> None:
    fail(defence, 9, ip="203.0.113.5")
    defence.record_success("cam1", "203.0.113.5")
    decision = fail(defence, 1, ip="203.0.113.5")[0]
    assert (decision.device_failures, decision.ip_failures) == (10, 10)
    device = defence.snapshot()["devices"][0]
    assert device["last_success_ip"] == "203.0.113.5" and device["last_success_at"] is not None


def test_clear_device_keeps_the_ip_count(defence: AuthDefence) -> None:
    fail(defence, 19, ip="203.0.113.6")
    defence.clear_device("cam1")
    decision = fail(defence, 1, ip="203.0.113.6")[0]
    assert (decision.device_failures, decision.ip_failures, decision.block_ip) == (1, 20, True)


def test_snapshot_shape(defence: AuthDefence) -> None:
    fail(defence, 6)
    snap = defence.snapshot()
    assert snap["as_of"] == "2025-06-15T15:06:40Z"
    assert snap["settings"]["notification_threshold"] == 5 and "auto_disable_threshold" not in snap["settings"]
    assert snap["devices"][0]["failures"] == 6 and snap["devices"][0]["last_notified_at"] == snap["as_of"]
    assert snap["ips"] == [{"ip": "203.0.113.1", "failures": 6, "last_failure_at": snap["as_of"],
                            "blocked": False}]
    assert snap["blocked_ip_count"] == 0


# -- concurrency ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("store", ["embedded", "postgres"])
def test_concurrent_failures_are_counted_exactly(store: str, request: pytest.FixtureRequest, db_path: Path,
                                                 clock: Clock) -> None:
    """Eight threads fail at once: on the SQLite store, through one defence; on PostgreSQL, through four
    (runtimes sharing the database)."""
    settings = AuthDefenceSettings(notification_threshold=100,
                                   unknown_id_limit_per_ip=1_000_000)
    url = request.getfixturevalue("postgres").fresh_url() if store == "postgres" else ""
    stores: list[FailureDefence] = ([_pg_defence(url, clock, settings) for _ in range(4)] if url
                                    else [AuthDefence(db_path, settings, clock=clock)])
    threads, per_thread = 8, 40
    results: list[FailureDecision] = []
    results_lock = threading.Lock()
    start = threading.Barrier(threads)
    try:
        def worker(n: int) -> None:
            start.wait()
            d = stores[n % len(stores)]
            mine = [d.record_failure("cam1", f"203.0.113.{n}", known_device=True) for _ in range(per_thread)]
            with results_lock:
                results.extend(mine)

        pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        total = threads * per_thread
        assert sorted(r.device_failures for r in results) == list(range(1, total + 1))
        assert sum(r.notify for r in results) == 1
        assert {ip["ip"]: ip["failures"] for ip in stores[-1].snapshot()["ips"]} == {
            f"203.0.113.{n}": per_thread for n in range(threads)}
    finally:
        for d in stores:
            d.close()
    if url:
        with psycopg.connect(url) as conn:
            stored = b"".join(bytes(v) for row in conn.execute(
                "SELECT source, device, address FROM auth_failures UNION ALL "
                "SELECT device, doc, doc FROM auth_devices").fetchall() for v in row if v is not None)
        assert b"cam1" not in stored and b"203.0.113" not in stored, "no device name or address in the clear"


# -- settings and store ---------------------------------------------------------------------------------

def test_settings_from_dict_is_strict() -> None:
    assert AuthDefenceSettings.from_dict({}) == AuthDefenceSettings()
    assert AuthDefenceSettings.from_dict({"time_window_minutes": 15}).time_window_minutes == 15
    with pytest.raises(AuthDefenceSettingsError, match=r"unknown key 'notification_treshold'.*notification_threshold"):
        AuthDefenceSettings.from_dict({"notification_treshold": 3})
    with pytest.raises(AuthDefenceSettingsError, match="object"):
        AuthDefenceSettings.from_dict([])  # type: ignore[arg-type]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("time_window_minutes", 0, r"1\.\.10080"),
    ("time_window_minutes", 10081, r"1\.\.10080"),
    ("notification_threshold", -1, "0 turns it off"),
    ("notification_threshold", 100_001, r"0\.\.100000"),
    ("min_interval_minutes", "30", "whole number"),
    ("unknown_id_limit_per_ip", 0, r"1\.\.1000000"),
    ("notification_threshold", True, "whole number"),
    ("time_window_minutes", 1.5, "whole number"),
])
def test_settings_bounds(key: str, value: object, message: str) -> None:
    with pytest.raises(AuthDefenceSettingsError, match=f"auth_defence.{key}.*{message}"):
        AuthDefenceSettings.from_dict({key: value})


def test_store_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(AuthDefenceError, match="directory exists"):
        AuthDefence(tmp_path / "missing" / "auth.sqlite", AuthDefenceSettings())
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(AuthDefenceError, match="move the file aside"):
        AuthDefence(junk, AuthDefenceSettings())


def test_blocks_seen_by_another_process_are_honoured_after_a_refresh(db_path: Path, clock: Clock,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Most requests come from addresses with no failures and skip the store; failures another process records
    still block here once the list of suspect addresses is read again."""
    from cryospy.functions.devices import auth_defence

    settings = AuthDefenceSettings()
    with AuthDefence(db_path, settings, clock=clock) as here, AuthDefence(db_path, settings, clock=clock) as there:
        assert not here.is_blocked("10.0.0.9")                  # reads the (empty) suspect list
        for _ in range(settings.unknown_id_limit_per_ip):
            there.record_failure(None, "10.0.0.9", known_device=False)
        assert there.is_blocked("10.0.0.9")                     # its own failures count at once
        monkeypatch.setattr(auth_defence, "SUSPECTS_REFRESH_SECONDS", 0.0)
        assert here.is_blocked("10.0.0.9")
        assert not here.is_blocked("10.0.0.10")


# -- several runtimes on one PostgreSQL --------------------------------------------------------------------

def test_runtimes_on_one_database_share_the_window_and_the_alert(postgres, clock: Clock) -> None:
    url = postgres.fresh_url()
    a, b = _pg_defence(url, clock, AuthDefenceSettings()), _pg_defence(url, clock, AuthDefenceSettings())
    try:
        ip = "198.51.100.20"
        flags = [d.record_failure("cam1", ip, known_device=True).notify for _ in range(5) for d in (a, b)]
        assert flags.count(True) == 1, "one alert mail for the deployment, not one per runtime"
        assert [a.record_failure(None, ip, known_device=False) for _ in range(10)][-1].block_ip
        assert a.is_blocked(ip) and b.is_blocked(ip), "guesses spread over runtimes get one budget"
        assert b.snapshot()["devices"][0]["failures"] == 10
        a.clear_device("cam1")
        assert b.record_failure("cam1", "203.0.113.50", known_device=True).device_failures == 1
        clock.advance(60)
        assert not b.is_blocked(ip), "and the window slides the same for both"
    finally:
        a.close()
        b.close()
