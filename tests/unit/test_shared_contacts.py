"""Device health (last seen, heartbeats), camera presence and the upload slot limiter on both of their stores:
in the runtime (the embedded default) and in a real PostgreSQL (tests/postgres_server.py), where several
runtimes share them. The same tests hold both to one contract; the PostgreSQL-only tests then open the store
several times (runtimes) and check that a camera heard by one is online and fresh on the other, that each
online/offline change is claimed by one runtime however many race for it, that racing runtimes grant one
slot budget between them, and that the tables show no camera name."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.channels import HomeEvent
from cryospy.functions.channels.presence import Presence
from cryospy.functions.channels.shared_presence import PostgresPresenceStore, SharedPresence
from cryospy.functions.devices.health import DeviceHealth, HealthStore
from cryospy.functions.devices.pg_device_store import PostgresDeviceStore
from cryospy.functions.devices.pg_health import PostgresDeviceHealth
from cryospy.functions.devices.registry import DeviceRegistry
from cryospy.functions.errors import TooManyRequests
from cryospy.functions.index.tinydb_files import IndexCorrupt
from cryospy.functions.uploads.pg_slot_limiter import PostgresSlotLimiter
from cryospy.functions.uploads.slot_limiter import SlotBudget, SlotLimiter

CAMERA = "Back Garden cam"
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = NOW.timestamp()

    def __call__(self) -> float:
        return self.t


def kinds(events: list[HomeEvent]) -> list[str]:
    return [e.kind for e in events]


@pytest.fixture
def presences(url: str | None) -> Iterator[Callable[..., Presence]]:
    """Opens a presence: each one another runtime on PostgreSQL (one key), the one runtime when embedded."""
    key, opened = os.urandom(32), []

    def open_presence(clock: Clock, after: float = 60) -> Presence:
        if url:
            opened.append(SharedPresence(PostgresPresenceStore(open_pool(url, max_size=2), lambda: key), after,
                                         monotonic=clock, clock=clock))
        else:
            opened.append(Presence(after, monotonic=clock, wall=lambda: datetime.fromtimestamp(clock.t, UTC)))
        return opened[-1]
    yield open_presence
    for presence in opened:
        presence.close()


@pytest.fixture
def pg_url(postgres) -> str:
    return str(postgres.fresh_url())


# -- presence: one contract -----------------------------------------------------------------------------
def test_silence_longer_than_the_limit_is_one_camera_offline_and_contact_brings_it_back(presences) -> None:
    clock = Clock()
    p = presences(clock)
    assert p.seen("cam") == [] and p.connectivity("cam") == "ON"
    clock.t += 60
    assert p.check() == [], "exactly the limit is not yet silence"
    clock.t += 1
    offline = p.check()
    assert kinds(offline) == ["camera_offline"] and offline[0].detail == "no contact from the agent for 60 s"
    assert p.check() == [] and p.connectivity("cam") == "OFF", "said once"
    back = p.seen("cam")
    assert kinds(back) == ["camera_online"] and p.connectivity("cam") == "ON"
    assert p.seen("cam") == [] and p.check() == []


def test_contact_between_checks_keeps_a_camera_online(presences) -> None:
    clock = Clock()
    p = presences(clock)
    p.seen("cam")
    for _ in range(10):
        clock.t += 30
        p.seen("cam")
        assert p.check() == [] and p.connectivity("cam") == "ON"
    clock.t += 59
    assert p.check() == [], "the last contact is what counts, not the last check"


def test_a_held_long_poll_is_contact_for_as_long_as_it_is_held(presences) -> None:
    clock = Clock()
    p = presences(clock, after=15)
    p.seen("cam")
    with p.holding("cam"):
        clock.t += 100
        assert p.check() == []
    clock.t += 15
    assert p.check() == [], "the poll's end is contact too"
    clock.t += 1
    assert kinds(p.check()) == ["camera_offline"]


def test_an_agent_that_said_goodbye_is_not_announced_twice_and_its_own_word_counts(presences) -> None:
    clock = Clock()
    p = presences(clock)
    p.seen("cam")
    p.reported(HomeEvent(camera="cam", kind="camera_offline", at="x", detail="the agent stopped"))
    assert p.connectivity("cam") == "OFF"
    clock.t += 61
    assert p.check() == [], "already offline by its own word"
    assert p.seen("cam") == [], "a restarted agent says camera_online itself once its source opens"
    p.reported(HomeEvent(camera="cam", kind="camera_online", at="x"))
    assert p.connectivity("cam") == "ON"


def test_the_state_is_primed_from_persisted_last_seen_without_events(presences) -> None:
    clock = Clock()
    p = presences(clock)
    p.prime([("recent", (NOW - timedelta(seconds=20)).isoformat()), ("old", (NOW - timedelta(hours=3)).isoformat()),
             ("never", None), ("garbled", "yesterday")])
    assert p.connectivity("recent") == "ON" and p.connectivity("old") == "OFF"
    assert p.connectivity("never") is None and p.connectivity("garbled") is None
    clock.t += 41
    assert [e.camera for e in p.check()] == ["recent"], "40 s more of silence, and no event for the old one"
    assert kinds(p.seen("old")) == ["camera_online"]
    p.forget("old")
    assert p.connectivity("old") is None


# -- presence shared by runtimes (PostgreSQL) ---------------------------------------------------------------
def _shared(url: str, clock: Clock, key: bytes, after: float = 60) -> SharedPresence:
    return SharedPresence(PostgresPresenceStore(open_pool(url, max_size=2), lambda: key), after,
                          monotonic=clock, clock=clock)


def test_a_camera_heard_by_one_runtime_is_online_on_the_other_and_each_change_is_published_once(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    a, b = _shared(pg_url, clock, key), _shared(pg_url, clock, key)
    try:
        a.seen(CAMERA)
        for _ in range(12):                       # six minutes of contact with A only
            clock.t += 30
            a.seen(CAMERA)
            assert a.check() + b.check() == []
            assert b.connectivity(CAMERA) == "ON", "B hears of A's contact"
        with a.holding(CAMERA):                   # a long-poll held by A is contact for B too
            clock.t += 100
            assert a.check() + b.check() == []
        clock.t += 61                             # silent: one offline across both runtimes, in either order
        events = b.check() + a.check()
        assert kinds(events) == ["camera_offline"] and events[0].camera == CAMERA
        assert a.check() + b.check() == [] and a.connectivity(CAMERA) == b.connectivity(CAMERA) == "OFF"
        back = a.seen(CAMERA) + b.seen(CAMERA)    # it comes back talking to both: one online
        assert kinds(back) == ["camera_online"]
        assert a.check() + b.check() == [] and b.connectivity(CAMERA) == "ON"
    finally:
        a.close()
        b.close()


def test_runtimes_racing_for_one_change_publish_it_once(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    runtimes = [_shared(pg_url, clock, key) for _ in range(6)]
    try:
        runtimes[0].seen(CAMERA)
        clock.t += 61

        def race(call: Callable[[SharedPresence], list[HomeEvent]]) -> list[HomeEvent]:
            start, won, lock = threading.Barrier(len(runtimes)), [], threading.Lock()

            def one(p: SharedPresence) -> None:
                start.wait()
                events = call(p)
                with lock:
                    won.extend(events)
            threads = [threading.Thread(target=one, args=(p,)) for p in runtimes]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return won
        for _ in range(3):
            assert kinds(race(lambda p: p.check())) == ["camera_offline"]
            assert kinds(race(lambda p: p.seen(CAMERA) + p.check())) == ["camera_online"]
            clock.t += 61
    finally:
        for p in runtimes:
            p.close()


def test_an_agents_goodbye_on_one_runtime_silences_the_others_offline_event(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    a, b = _shared(pg_url, clock, key), _shared(pg_url, clock, key)
    try:
        a.seen(CAMERA)
        a.reported(HomeEvent(camera=CAMERA, kind="camera_offline", at="x", detail="the agent stopped"))
        clock.t += 61
        assert b.check() + a.check() == [], "the agent said so itself; nobody repeats it"
        assert b.connectivity(CAMERA) == "OFF"
    finally:
        a.close()
        b.close()


def test_the_presence_table_shows_no_camera_name_and_a_moved_row_fails(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    p = _shared(pg_url, clock, key)
    try:
        p.seen(CAMERA)
        p.seen("Front Door")
        p.reported(HomeEvent(camera=CAMERA, kind="camera_online", at="x"))
        p.check()
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT device, contact, offline, reported FROM device_presence").fetchall()
            blob = b"".join(bytes(c) for r in rows for c in (r[0], r[1], r[3]) if c is not None)
            assert len(rows) == 2 and b"Garden" not in blob and b"Front" not in blob and b"ON" not in blob
            conn.execute("UPDATE device_presence SET contact = (SELECT contact FROM device_presence "
                         "WHERE device <> d.device) FROM device_presence d WHERE device_presence.device = d.device")
        with pytest.raises(IndexCorrupt):
            p.check()
    finally:
        p.close()


# -- device health: one contract ----------------------------------------------------------------------------
@pytest.fixture
def healths(url: str | None, tmp_path: Path) -> Iterator[Callable[..., HealthStore]]:
    key, opened = os.urandom(32), []

    def open_health(clock: Clock | None = None) -> HealthStore:
        monotonic = clock or Clock()
        opened.append(PostgresDeviceHealth(open_pool(url, max_size=2), lambda: key, monotonic=monotonic) if url
                      else DeviceHealth(tmp_path / "devices-health.json", monotonic=monotonic))
        return opened[-1]
    yield open_health
    for health in opened:
        health.close()


def test_health_keeps_the_last_contact_and_heartbeat_across_a_restart(healths) -> None:
    health = healths()
    assert health.get(CAMERA) is None
    health.record(CAMERA, "2026-01-01T12:00:00Z", {"settings_etag": "e1", "last_sequence": 4})
    health.record(CAMERA, "2026-01-01T12:00:03Z", None)
    assert health.get(CAMERA) == {"last_seen": "2026-01-01T12:00:03Z", "heartbeat": {
        "settings_etag": "e1", "last_sequence": 4, "received_at": "2026-01-01T12:00:00Z"}}
    health.record("Front Door", "2026-01-01T12:00:04Z", None)
    health.forget("Front Door")
    assert health.get("Front Door") is None
    health.flush()
    health.close()
    again = healths()
    assert again.get(CAMERA) == {"last_seen": "2026-01-01T12:00:03Z", "heartbeat": {
        "settings_etag": "e1", "last_sequence": 4, "received_at": "2026-01-01T12:00:00Z"}}
    assert again.get("Front Door") is None


# -- device health shared by runtimes (PostgreSQL) ----------------------------------------------------------
def _health(url: str, key: bytes, clock: Clock, **kw: float) -> PostgresDeviceHealth:
    return PostgresDeviceHealth(open_pool(url, max_size=2), lambda: key, monotonic=clock, **kw)


def test_another_runtime_sees_the_freshest_contact_and_writes_are_throttled(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    a, b = _health(pg_url, key, clock, read_every_s=0), _health(pg_url, key, clock, read_every_s=0)
    try:
        a.record(CAMERA, "2026-01-01T12:00:00Z", None)
        assert b.get(CAMERA) == {"last_seen": "2026-01-01T12:00:00Z", "heartbeat": None}
        for second in range(1, 5):                # a busy camera: within write_every_s, memory only
            a.record(CAMERA, f"2026-01-01T12:00:0{second}Z", None)
        assert a.writes == 1 and a.get(CAMERA)["last_seen"] == "2026-01-01T12:00:04Z"
        assert b.get(CAMERA)["last_seen"] == "2026-01-01T12:00:00Z", "not written yet"
        a.record(CAMERA, "2026-01-01T12:00:04Z", {"settings_etag": "e2"})   # a heartbeat goes at once
        assert a.writes == 2 and b.get(CAMERA)["heartbeat"]["settings_etag"] == "e2"
        a.record(CAMERA, "2026-01-01T12:00:05Z", None)
        clock.t += 5
        assert b.get(CAMERA)["last_seen"] == "2026-01-01T12:00:04Z"
        a.get("Front Door")                       # any request after the interval writes what waits
        assert a.writes == 3 and b.get(CAMERA)["last_seen"] == "2026-01-01T12:00:05Z"
        b.record(CAMERA, "2026-01-01T12:00:02Z", None)   # a late write from B never moves it backwards
        assert a.get(CAMERA)["last_seen"] == "2026-01-01T12:00:05Z"
        assert b.get(CAMERA)["heartbeat"]["settings_etag"] == "e2"
    finally:
        a.close()
        b.close()


def test_the_admin_list_on_either_runtime_shows_contact_made_with_the_other(pg_url, tmp_path: Path) -> None:
    key = os.urandom(32)

    def registry(name: str) -> DeviceRegistry:
        return DeviceRegistry(tmp_path / name / "devices.json",
                              store=PostgresDeviceStore(open_pool(pg_url, max_size=2), lambda: key),
                              health=PostgresDeviceHealth(open_pool(pg_url, max_size=2), lambda: key, read_every_s=0))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = registry("a"), registry("b")
    try:
        a.create(CAMERA, None, {})
        assert b.get(CAMERA).last_seen is None
        a.touch(CAMERA, {"settings_etag": "e9", "last_sequence": 12})
        listed = {d.device_id: d for d in b.list()}
        assert listed[CAMERA].last_seen is not None and listed[CAMERA].heartbeat["last_sequence"] == 12
        with psycopg.connect(pg_url) as conn:
            stored = b"".join(bytes(r[0]) + bytes(r[1]) for r in conn.execute("SELECT device, doc FROM device_health"))
        assert b"Garden" not in stored and b"e9" not in stored and b"last_sequence" not in stored
    finally:
        a.close()
        b.close()


# -- the upload slot limiter: one contract, then one budget across runtimes ---------------------------------
@pytest.fixture
def limiters(url: str | None) -> Iterator[Callable[[Clock, int], SlotBudget]]:
    key, opened = os.urandom(32), []

    def open_limiter(clock: Clock, per_minute: int) -> SlotBudget:
        opened.append(PostgresSlotLimiter(open_pool(url, max_size=2), lambda: key, per_minute, clock=clock) if url
                      else SlotLimiter(per_minute, monotonic=clock))
        return opened[-1]
    yield open_limiter
    for limiter in opened:
        limiter.close()


def test_a_camera_gets_its_burst_then_one_slot_per_refill(limiters) -> None:
    clock = Clock()
    limiter = limiters(clock, 6)
    for _ in range(6):
        limiter.take(CAMERA)
    with pytest.raises(TooManyRequests, match="more than 6 upload slots a minute; keep the clip and ask again in 10 s"):
        limiter.take(CAMERA)
    limiter.take("Front Door")                  # each camera has its own budget
    clock.t += 10
    limiter.take(CAMERA)
    with pytest.raises(TooManyRequests):
        limiter.take(CAMERA)
    clock.t += 3600
    for _ in range(6):                           # refilled to the burst, not beyond
        limiter.take(CAMERA)
    with pytest.raises(TooManyRequests):
        limiter.take(CAMERA)


def test_the_slot_budget_is_the_deployments_not_each_runtimes(pg_url) -> None:
    clock, key = Clock(), os.urandom(32)
    runtimes = [PostgresSlotLimiter(open_pool(pg_url, max_size=2), lambda: key, 20, clock=clock) for _ in range(4)]
    try:
        granted, refused, lock = [], [], threading.Lock()
        start = threading.Barrier(len(runtimes))

        def ask(limiter: PostgresSlotLimiter) -> None:
            start.wait()
            for _ in range(10):
                try:
                    limiter.take(CAMERA)
                    outcome = granted
                except TooManyRequests:
                    outcome = refused
                with lock:
                    outcome.append(1)
        threads = [threading.Thread(target=ask, args=(r,)) for r in runtimes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert (len(granted), len(refused)) == (20, 20), "40 asked on 4 runtimes, a budget of 20 in all"
        with psycopg.connect(pg_url) as conn:
            rows = conn.execute("SELECT device, bucket FROM slot_buckets").fetchall()
        assert len(rows) == 1 and b"Garden" not in b"".join(bytes(r[0]) + bytes(r[1]) for r in rows)
    finally:
        for limiter in runtimes:
            limiter.close()
