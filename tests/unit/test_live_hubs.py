"""The live view's state on both of its stores: one runtime's memory (:class:`LiveHub`, the embedded default) and
a real PostgreSQL (tests/postgres_server.py) shared by several runtimes (:class:`PostgresLiveHub`). The same
tests hold both to one contract; the PostgreSQL-only tests then open the hub twice on separate pools (two
runtimes) and check that a viewer on one wakes the other's held agent poll by LISTEN/NOTIFY, that parts added
on either are numbered once for the deployment and listed by both, and that the tables show no camera name,
part key or part fact."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.live.hub import LiveHub, LiveState, ParsedPart
from cryospy.functions.live.pg_hub import PostgresLiveHub
from cryospy.web.live_media import parts_playlist

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)
CAMERA = "Front Door cam"
LONG = 30.0     # a held poll's timeout: answered before it means it was woken


def parsed(key: str, start: float, init: bytes = b"init-a", duration: float = 1.0) -> ParsedPart:
    return ParsedPart(key=key, captured_at=T0 + timedelta(seconds=start), duration_s=duration, start_s=start,
                      init_size=len(init), init_digest=hashlib.sha256(init).digest(), fragment_offset=len(init),
                      fragment_size=100, sealed_size=500, codec="avc1.4d400c")


@pytest.fixture
def hubs(url: str | None) -> Iterator[Callable[..., LiveState]]:
    """Opens a hub: each one another runtime on PostgreSQL (one key, a pool each), the one runtime when
    embedded (every call is the same hub)."""
    key, opened = os.urandom(32), []

    def open_hub(**kw: float) -> LiveState:
        if url:
            opened.append(PostgresLiveHub(open_pool(url, max_size=4), lambda: key, recheck_s=LONG, **kw))
        elif not opened:
            opened.append(LiveHub(**kw))
        return opened[-1]
    yield open_hub
    for hub in opened:
        hub.close()


def held(hub: LiveState, device_id: str, known: bool, answers: list[tuple[bool, bool, float]]) -> threading.Thread:
    """An agent's long-poll, held in a thread; returns once the hub counts it as waiting."""
    def poll() -> None:
        t0 = time.monotonic()
        answers.append((*hub.wait_for_change(device_id, known, LONG), time.monotonic() - t0))
    thread = threading.Thread(target=poll)
    thread.start()
    while hub._waiters == 0 and thread.is_alive():   # type: ignore[attr-defined]
        time.sleep(0.01)
    return thread


# -- one contract ---------------------------------------------------------------------------------------
def test_parts_are_numbered_a_new_clip_is_a_discontinuity_and_the_window_slides(hubs) -> None:
    hub = hubs(window=3)
    for i in range(3):
        hub.add_part(CAMERA, parsed(f"k{i}", float(i)))
    hub.add_part(CAMERA, parsed("k3", 0.0, init=b"init-b"))       # a new clip: new init, time starts again
    hub.add_part(CAMERA, parsed("k4", 1.0, init=b"init-b"))
    again = hub.add_part(CAMERA, parsed("k4", 1.0, init=b"init-b"))   # reported twice: numbered once
    parts = hub.parts(CAMERA)
    assert [(p.key, p.media_sequence, p.discontinuity, p.map_key) for p in parts] == [
        ("k2", 2, 0, "k0"), ("k3", 3, 1, "k3"), ("k4", 4, 1, "k3")]
    assert again.media_sequence == 4
    assert parts[0].captured_at == T0 + timedelta(seconds=2) and parts[0].duration_s == 1.0
    assert (parts[0].init_size, parts[0].fragment_offset, parts[0].fragment_size, parts[0].sealed_size,
            parts[0].codec) == (6, 6, 100, 500, "avc1.4d400c")
    assert hub.init_holder(CAMERA, "k0").key == "k2"               # k0 slid out; k2 carries the same init
    assert hub.part(CAMERA, "k1") is None and hub.part(CAMERA, "k3").media_sequence == 3
    assert hub.parts("another camera") == [] and hub.part("another camera", "k3") is None
    assert "#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n" in parts_playlist(CAMERA, parts)
    hub.forget(CAMERA)
    assert hub.parts(CAMERA) == []


def test_a_viewer_wakes_the_held_poll_and_the_grace_period_ends_the_watching(hubs) -> None:
    hub = hubs(grace_s=0.5)
    assert not hub.watched(CAMERA)
    answers: list[tuple[bool, bool, float]] = []
    poll = held(hub, CAMERA, False, answers)
    hub.viewer_seen(CAMERA)
    poll.join()
    assert answers[0][:2] == (True, True) and answers[0][2] < LONG, "woken by the viewer, not by its timeout"
    assert hub.watched(CAMERA)
    hub.viewer_seen(CAMERA)                    # ten viewers or one: the agent sees one boolean
    watch, waited = hub.wait_for_change(CAMERA, True, LONG)   # nobody asks again
    assert (watch, waited) == (False, True) and not hub.watched(CAMERA)


def test_polls_beyond_the_waiting_limit_are_answered_at_once_and_a_stop_answers_the_held_ones(hubs) -> None:
    hub = hubs(max_waiters=1)
    answers: list[tuple[bool, bool, float]] = []
    poll = held(hub, "a", False, answers)
    assert hub.wait_for_change("b", False, LONG) == (False, False)
    hub.release_waiters()
    poll.join()
    assert answers[0][:2] == (False, True) and answers[0][2] < LONG
    assert hub.wait_for_change("a", False, LONG) == (False, True), "after a stop, polls are answered at once"


# -- PostgreSQL: two runtimes ------------------------------------------------------------------------------
@pytest.fixture
def pg_hubs(postgres) -> Iterator[Callable[..., PostgresLiveHub]]:
    url, key, opened = postgres.fresh_url(), os.urandom(32), []

    def open_hub(**kw: float) -> PostgresLiveHub:
        opened.append(PostgresLiveHub(open_pool(url, max_size=4), lambda: key, recheck_s=LONG, **kw))
        return opened[-1]
    yield open_hub
    for hub in opened:
        hub.close()


def test_a_viewer_on_one_runtime_wakes_the_agent_poll_held_by_another(pg_hubs) -> None:
    a, b = pg_hubs(), pg_hubs()
    answers: list[tuple[bool, bool, float]] = []
    poll = held(a, CAMERA, False, answers)
    b.viewer_seen(CAMERA)
    poll.join()
    assert answers[0][:2] == (True, True) and answers[0][2] < LONG, "A heard B's viewer by NOTIFY"
    assert a.watched(CAMERA) and b.watched(CAMERA) and not a.watched("another camera")


def test_parts_pushed_to_either_runtime_are_numbered_once_and_listed_by_both(pg_hubs) -> None:
    a, b = pg_hubs(window=4), pg_hubs(window=4)
    for i, hub in enumerate([a, b, a, b, a]):
        hub.add_part(CAMERA, parsed(f"k{i}", float(i)))
    b.add_part(CAMERA, parsed("k5", 0.0, init=b"init-b"))
    assert a.add_part(CAMERA, parsed("k5", 0.0, init=b"init-b")).media_sequence == 5, "the same part, once"
    seen_a = [(p.key, p.media_sequence, p.discontinuity, p.map_key) for p in a.parts(CAMERA)]
    assert seen_a == [(p.key, p.media_sequence, p.discontinuity, p.map_key) for p in b.parts(CAMERA)]
    assert seen_a == [("k2", 2, 0, "k0"), ("k3", 3, 0, "k0"), ("k4", 4, 0, "k0"), ("k5", 5, 1, "k5")]
    assert parts_playlist(CAMERA, a.parts(CAMERA)) == parts_playlist(CAMERA, b.parts(CAMERA))


def test_racing_runtimes_number_parts_without_gaps_or_repeats(pg_hubs) -> None:
    runtimes = [pg_hubs(window=100) for _ in range(3)]
    threads = [threading.Thread(target=lambda h=h, n=n: [h.add_part(CAMERA, parsed(f"r{n}-{i}", 0.0))
                                                        for i in range(10)])
               for n, h in enumerate(runtimes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.media_sequence for p in runtimes[0].parts(CAMERA)] == list(range(30))


def test_stale_parts_are_not_offered_but_still_served_until_they_slide_out(pg_hubs) -> None:
    hub = pg_hubs(fresh_s=0.0)
    hub.add_part(CAMERA, parsed("k0", 0.0))
    assert hub.parts(CAMERA) == [] and hub.part(CAMERA, "k0") is not None


def test_the_tables_hold_no_camera_name_part_key_or_part_fact(postgres) -> None:
    url = postgres.fresh_url()
    hub = PostgresLiveHub(open_pool(url, max_size=2), lambda: b"k" * 32)
    try:
        hub.viewer_seen(CAMERA)
        hub.add_part(CAMERA, parsed("live/tok/20260501T080000.000Z-0123456789abcdef.cse", 0.0))
    finally:
        hub.close()
    with psycopg.connect(url) as conn:
        dump = b"".join(bytes(c) if isinstance(c, (bytes, memoryview)) else str(c).encode()
                        for table in ("live_cameras", "live_parts")
                        for row in conn.execute(f"SELECT * FROM {table}").fetchall() for c in row)
    for secret in (CAMERA.encode(), b"0123456789abcdef", b"avc1", b"2026-05-01T08", hashlib.sha256(b"init-a").digest()):
        assert secret not in dump


def test_parts_whose_objects_the_sweep_deleted_are_pruned_for_every_camera(postgres) -> None:
    url = postgres.fresh_url()
    hub = PostgresLiveHub(open_pool(url, max_size=2), lambda: b"k" * 32)
    try:
        hub.add_part("quiet camera", parsed("q0", 0.0))
        hub.add_part("quiet camera", parsed("q1", 1.0))
        with psycopg.connect(url) as conn:       # as if received before the sweep's lifetime
            conn.execute("UPDATE live_parts SET received = received - interval '1 hour'")
        hub.add_part(CAMERA, parsed("k0", 0.0))
        assert hub.part("quiet camera", "q0") is None and hub.part(CAMERA, "k0") is not None
        hub.add_part("quiet camera", parsed("q2", 2.0))   # its numbering carries on
        assert [(p.key, p.media_sequence) for p in hub.parts("quiet camera")] == [("q2", 2)]
    finally:
        hub.close()
