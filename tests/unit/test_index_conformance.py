"""What every clip index must do (functions/index/protocol.py), run against each implementation.

To add an implementation, add a factory to ``IMPLEMENTATIONS``: it returns an :class:`IndexUnderTest` with the
index, a way to open the same index again (a restart), and the bytes it keeps at rest (to show that no
per-clip metadata is plaintext there). Functional tier: real files, and for PostgreSQL a real server
(tests/postgres_server.py), whose bytes at rest are every value of the index's tables as stored plus the
database's data and WAL files on disk after a checkpoint.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from cryospy.common.database import open_pool
from cryospy.functions.index.postgres import PostgresIndex
from cryospy.functions.index.protocol import ClipIndex
from cryospy.functions.index.query import ClipQuery
from cryospy.functions.index.records import ClipRecord, DeviceUsage, fragments_from
from cryospy.functions.index.store import TinyDBIndex


@dataclass
class IndexUnderTest:
    index: ClipIndex
    reopen: Callable[[], ClipIndex]
    at_rest: Callable[[], bytes]
    # Fields the store keeps in the clear by design, as its module docstring says (each also in the object key).
    in_clear: frozenset[str] = frozenset()


def _tinydb(request: pytest.FixtureRequest, tmp_path: Path) -> IndexUnderTest:
    key = os.urandom(32)
    root = tmp_path / "index"

    def at_rest() -> bytes:
        files = sorted(p for p in root.rglob("*") if p.is_file())
        return b"".join(str(p.relative_to(root)).encode() + p.read_bytes() for p in files)

    return IndexUnderTest(TinyDBIndex(root, lambda: key), lambda: TinyDBIndex(root, lambda: key), at_rest)


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> IndexUnderTest:
    server = request.getfixturevalue("postgres")
    url, key = server.fresh_url(), os.urandom(32)
    opened: list[PostgresIndex] = []

    def open_index() -> PostgresIndex:
        opened.append(PostgresIndex(open_pool(url, max_size=8), lambda: key))
        return opened[-1]

    def at_rest() -> bytes:
        with psycopg.connect(url, autocommit=True) as conn:
            tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables "
                                                 "WHERE table_schema = current_schema()").fetchall()]
            values = [v for t in tables for row in conn.execute(f"SELECT * FROM {t}").fetchall() for v in row]
            conn.execute("CHECKPOINT")
            oid = conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()[0]
        files = [p for folder in (server.data / "base" / str(oid), server.data / "pg_wal")
                 for p in folder.rglob("*") if p.is_file()]
        return b"".join(v if isinstance(v, bytes) else str(v).encode() for v in values) + b"".join(
            p.read_bytes() for p in files)

    index = open_index()
    request.addfinalizer(lambda: [i.close() for i in opened])
    return IndexUnderTest(index, open_index, at_rest, in_clear=frozenset({"captured_at"}))


IMPLEMENTATIONS: dict[str, Callable[[pytest.FixtureRequest, Path], IndexUnderTest]] = {
    "tinydb": _tinydb, "postgres": _postgres}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def under_test(request: pytest.FixtureRequest, tmp_path: Path) -> IndexUnderTest:
    return IMPLEMENTATIONS[request.param](request, tmp_path)


@pytest.fixture
def index(under_test: IndexUnderTest) -> ClipIndex:
    return under_test.index


def clip(device: str, day: str, hms: str, sequence: int = 0, *, size: int = 1000, thumb: int = 100,
         motion: bool = False, fragments: int = 2, protected: bool = False) -> ClipRecord:
    stamp = f"{day}T{hms}.000Z"
    return ClipRecord(
        key=f"clips/{device}/{day}/{stamp}-{sequence}.cse", device_id=device, day=day, captured_at=stamp,
        sequence=sequence, sealed_size=size, plain_size=size - 200, header_hash=f"{sequence:064x}",
        prev_hash=f"{max(sequence - 1, 0):064x}", thumb_key=f"thumbs/{device}/{sequence}.jpg.cse" if thumb else None,
        thumb_size=thumb, protected=protected, indexed_at=stamp, duration_s=float(fragments), width=640,
        height=360, fps=15.0, codec="avc1.42c01e", init_size=700,
        fragments=fragments_from([[700 + i * 100, 100, float(i), 1.0] for i in range(fragments)]),
        motion=motion, motion_score=0.5 if motion else 0.0, motion_intervals=((0.5, 1.5),) if motion else (),
        agent={"agent_version": "test"}, record_mode="transcode", chain="ok")


DAY1, DAY2, DAY3 = "2026-01-02", "2026-01-03", "2026-01-04"


# -- put, get, list ------------------------------------------------------------------------------------------
def test_put_get_and_list_by_device_and_day(index: ClipIndex) -> None:
    a, b = clip("cam 1", DAY1, "10:00:00", 1), clip("cam 1", DAY1, "09:00:00", 0)
    c, d = clip("cam 1", DAY2, "00:00:01", 2), clip("cam+2", DAY1, "12:00:00", 0)
    for record in (a, b, c, d):
        assert index.upsert_clip(record) is True
    got = index.get_clip("cam 1", DAY1, a.key)
    assert got is not None and got.changed(live=None) == a.changed(live=None)   # fragments come back too
    assert index.has_clip("cam 1", DAY1, a.key) and not index.has_clip("cam 1", DAY2, a.key)
    assert index.get_clip("cam 1", DAY1, "clips/cam 1/nope.cse") is None
    assert [r.key for r in index.clips_for_day("cam 1", DAY1)] == [b.key, a.key]      # capture order
    assert all(r.fragments is None and r.fragment_count == 2 for r in index.clips_for_day("cam 1", DAY1))
    assert [r.fragments for r in index.clips_for_day("cam 1", DAY1, with_fragments=True)] == [b.fragments,
                                                                                               a.fragments]
    assert index.devices() == ["cam 1", "cam+2"]
    assert index.days("cam 1") == [DAY1, DAY2] and index.days("nobody") == []
    assert index.clips_for_day("nobody", DAY1) == []


def test_the_newest_days_and_a_days_neighbours(index: ClipIndex) -> None:
    days = [f"2026-01-{d:02d}" for d in (2, 3, 5, 9, 10)]
    for n, day in enumerate(days):
        index.upsert_clip(clip("cam", day, "10:00:00", n))
    index.upsert_clip(clip("other", "2026-01-04", "10:00:00"))
    assert index.days("cam", newest=2) == days[-2:] and index.days("cam", newest=9) == days
    assert index.days("cam", newest=0) == [] and index.days("nobody", newest=3) == []
    assert index.days("cam", newest=2, until="2026-01-08") == ["2026-01-03", "2026-01-05"]
    assert index.days("cam", newest=2, until="2026-01-05") == ["2026-01-03", "2026-01-05"]
    assert index.days("cam", until="2026-01-04") == days[:2] and index.days("cam", until="2026-01-01") == []
    assert index.adjacent_days("cam", "2026-01-05") == ("2026-01-03", "2026-01-09")
    assert index.adjacent_days("cam", "2026-01-04") == ("2026-01-03", "2026-01-05")   # a day without clips
    assert index.adjacent_days("cam", days[0]) == (None, "2026-01-03")
    assert index.adjacent_days("cam", days[-1]) == ("2026-01-09", None)
    assert index.adjacent_days("nobody", days[0]) == (None, None)


def test_a_replayed_upsert_changes_nothing_and_an_update_keeps_what_it_does_not_name(index: ClipIndex) -> None:
    a = clip("cam", DAY1, "10:00:00", 1)
    index.upsert_clip(a)
    assert index.upsert_clip(a) is False
    updated = index.update_clip("cam", DAY1, a.key, protected=True, chain="gap")
    assert updated is not None and updated.protected and updated.chain == "gap"
    again = index.get_clip("cam", DAY1, a.key)
    assert again is not None and again.protected and again.fragments == a.fragments and again.motion == a.motion
    assert index.update_clip("cam", DAY1, "clips/cam/none.cse", protected=True) is None
    with pytest.raises(TypeError):
        index.update_clip("cam", DAY1, a.key, no_such_field=1)
    # A flag turned off does not linger from before (the whole record is replaced).
    index.update_clip("cam", DAY1, a.key, missing=True, missing_since="2026-01-03T00:00:00Z")
    index.update_clip("cam", DAY1, a.key, missing=False, missing_since=None)
    back = index.get_clip("cam", DAY1, a.key)
    assert back is not None and not back.missing and back.missing_since is None


def test_remove_and_drop_device(index: ClipIndex) -> None:
    a, b, c = clip("cam", DAY1, "10:00:00", 1), clip("cam", DAY2, "10:00:00", 2), clip("other", DAY1, "10:00:00")
    for record in (a, b, c):
        index.upsert_clip(record)
    removed = index.remove_clip("cam", DAY1, a.key)
    assert removed is not None and removed.key == a.key
    assert index.remove_clip("cam", DAY1, a.key) is None
    assert index.days("cam") == [DAY2]
    index.drop_device("cam")
    assert index.devices() == ["other"] and index.usage("cam") == DeviceUsage()
    assert index.usage() == DeviceUsage(c.stored_bytes, 1)


# -- totals ----------------------------------------------------------------------------------------------------
def test_byte_totals_follow_every_change(index: ClipIndex) -> None:
    a, b = clip("cam", DAY1, "10:00:00", 1, size=1000, thumb=10), clip("cam", DAY2, "10:00:00", 2, size=5000, thumb=0)
    c = clip("cam2", DAY1, "10:00:00", 0, size=7, thumb=3)
    for record in (a, b, c):
        index.upsert_clip(record)
    index.upsert_clip(a)                                              # a replay counts nothing
    assert index.usage("cam") == DeviceUsage(6010, 2)
    assert index.usage() == DeviceUsage(6020, 3)
    index.update_clip("cam", DAY2, b.key, sealed_size=0)              # a tombstone costs nothing
    assert index.usage("cam").bytes == 1010
    index.set_quarantined("cam", 77)
    assert index.usage("cam") == DeviceUsage(1010, 2, 77) and index.usage().quarantine_bytes == 77
    index.remove_clip("cam", DAY1, a.key)
    assert index.usage("cam") == DeviceUsage(0, 1, 77)


def test_totals_and_records_survive_a_clean_restart(under_test: IndexUnderTest) -> None:
    a = clip("cam", DAY1, "10:00:00", 1)
    under_test.index.upsert_clip(a)
    under_test.index.close()
    again = under_test.reopen()
    assert again.usage("cam") == DeviceUsage(a.stored_bytes, 1)
    got = again.get_clip("cam", DAY1, a.key)
    assert got is not None and got.fragments == a.fragments


# -- protection and the retention walk --------------------------------------------------------------------
def test_oldest_unprotected_skips_evidence_and_sees_it_again_when_unprotected(index: ClipIndex) -> None:
    old = [clip("cam", DAY1, f"0{h}:00:00", h, protected=True) for h in range(3)]
    newer = [clip("cam", DAY2, "01:00:00", 10), clip("cam", DAY3, "01:00:00", 11)]
    for record in old + newer:
        index.upsert_clip(record)
    assert [r.key for r in index.oldest_unprotected("cam")] == [r.key for r in newer]
    assert [r.key for r in index.oldest_unprotected("cam")] == [r.key for r in newer]   # the walk again
    index.update_clip("cam", DAY1, old[1].key, protected=False)
    assert [r.key for r in index.oldest_unprotected("cam")] == [old[1].key] + [r.key for r in newer]
    late = clip("cam", DAY1, "09:30:00", 9)                 # a late upload into an old day
    index.upsert_clip(late)
    assert [r.key for r in index.oldest_unprotected("cam")][:2] == [old[1].key, late.key]


def test_oldest_unprotected_merges_devices_by_capture_time(index: ClipIndex) -> None:
    records = [clip("a", DAY1, "03:00:00", 1), clip("b", DAY1, "01:00:00", 1), clip("a", DAY2, "00:00:00", 2),
               clip("b", DAY1, "05:00:00", 2, protected=True), clip("b", DAY3, "00:00:00", 3)]
    for record in records:
        index.upsert_clip(record)
    want = sorted((r for r in records if not r.protected), key=lambda r: r.order)
    assert [r.key for r in index.oldest_unprotected()] == [r.key for r in want]


def test_the_walk_reads_lazily(index: ClipIndex) -> None:
    """Stopping after the first clip must not require the rest: records deleted meanwhile are no error."""
    records = [clip("cam", day, "01:00:00", n) for n, day in enumerate((DAY1, DAY2, DAY3))]
    for record in records:
        index.upsert_clip(record)
    walk = index.oldest_unprotected("cam")
    first = next(walk)
    index.remove_clip("cam", first.day, first.key)
    assert [r.key for r in walk] == [records[1].key, records[2].key]


# -- queries -------------------------------------------------------------------------------------------------
def _cursor(after: ClipRecord) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(after.order)).encode()).decode()


def test_query_by_device_time_range_and_motion_newest_first_and_paged(index: ClipIndex) -> None:
    records = [clip("cam", DAY1, f"{h:02d}:00:00", h, motion=h % 2 == 0) for h in range(6)]
    records += [clip("cam", DAY2, "01:00:00", 6, motion=True), clip("other", DAY1, "02:30:00", 0, motion=True)]
    for record in records:
        index.upsert_clip(record)
    everything = index.query(ClipQuery.parse({}))
    assert [r.key for r in everything.clips] == [r.key for r in sorted(records, key=lambda r: r.order, reverse=True)]
    assert everything.matched == len(records) and everything.next_cursor is None
    only_cam = index.query(ClipQuery.parse({"device": "cam", "motion": "true"}))
    assert [r.sequence for r in only_cam.clips] == [6, 4, 2, 0]
    ranged = index.query(ClipQuery.parse({"from": f"{DAY1}T02:00:00Z", "to": f"{DAY1}T04:00:00Z"}))
    assert [(r.device_id, r.sequence) for r in ranged.clips] == [("cam", 4), ("cam", 3), ("other", 0), ("cam", 2)]
    seen: list[str] = []
    params = {"limit": "3"}
    while True:
        page = index.query(ClipQuery.parse(params))
        assert page.matched == len(records) - len(seen)                 # what is left, this page included
        seen += [r.key for r in page.clips]
        if page.next_cursor is None:
            break
        params = {"limit": "3", "cursor": page.next_cursor}
    assert seen == [r.key for r in everything.clips]                     # every clip once, in order
    late = clip("cam", DAY2, "23:00:00", 7)
    index.upsert_clip(late)                                             # a new clip does not shift later pages
    second = index.query(ClipQuery.parse({"limit": "3", "cursor": _cursor(everything.clips[2])}))
    assert [r.key for r in second.clips] == seen[3:6] and second.matched == len(records) - 3
    cam_only = index.query(ClipQuery.parse({"device": "cam", "limit": "2"}))
    assert cam_only.matched == 8 and index.query(ClipQuery.parse({"device": "nobody"})).matched == 0
    assert index.query(ClipQuery.parse({"device": "cam", "limit": "2", "cursor": cam_only.next_cursor or ""}
                                       )).matched == 6
    assert index.query(ClipQuery.parse({"limit": "1"})).to_doc()["clips"][0]["key"] == late.key


def test_query_counts_what_is_left_when_clips_share_a_capture_time(index: ClipIndex) -> None:
    records = [clip(device, DAY1, "10:00:00", 0) for device in ("a", "b", "c")] + [clip("a", DAY1, "09:00:00", 1)]
    for record in records:
        index.upsert_clip(record)
    seen: list[str] = []
    params = {"limit": "1"}
    while True:
        page = index.query(ClipQuery.parse(params))
        assert page.matched == len(records) - len(seen)
        seen += [r.key for r in page.clips]
        if page.next_cursor is None:
            break
        params = {"limit": "1", "cursor": page.next_cursor}
    assert sorted(seen) == sorted(r.key for r in records)


# -- live numbering and sequences ----------------------------------------------------------------------------
def test_live_numbering_and_find_sequence(index: ClipIndex) -> None:
    for n, frags in enumerate((3, 2, 4)):
        index.upsert_clip(clip("cam", DAY1, f"0{n}:00:00", n, fragments=frags))
    index.upsert_clip(clip("cam", DAY1, "00:30:00", 9, fragments=1))     # late: stays out of the live stream
    assert [c.live for c in index.live_clips("cam", 4)] == [(0, 0), (3, 1), (5, 2)]
    assert all(c.fragments for c in index.live_clips("cam"))
    found = index.find_sequence("cam", 1, DAY1, -1)
    assert found is not None and found.captured_at.startswith(f"{DAY1}T01")
    assert index.find_sequence("cam", 5, DAY1, +1) is None


# -- listeners, writers, encryption ------------------------------------------------------------------------
def test_listeners_hear_each_change_once_and_may_read_the_index(index: ClipIndex) -> None:
    heard: list[tuple[str, str, int]] = []
    index.add_listener(lambda device, day: heard.append((device, day, len(index.clips_for_day(device, day)))))
    a = clip("cam", DAY1, "10:00:00", 1)
    index.upsert_clip(a)
    index.upsert_clip(a)                                   # no change, nothing heard
    index.update_clip("cam", DAY1, a.key, protected=True)
    index.remove_clip("cam", DAY1, a.key)
    assert heard == [("cam", DAY1, 1), ("cam", DAY1, 1), ("cam", DAY1, 0)]


def test_concurrent_writers_lose_no_update(index: ClipIndex) -> None:
    writers, per_writer = 4, 15
    base = [clip("cam", DAY1, "00:00:00", 0)]
    index.upsert_clip(base[0])
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            start.wait()
            for i in range(per_writer):
                n = 1 + w * per_writer + i
                index.upsert_clip(clip("cam", DAY1, f"{n // 60:02d}:{n % 60:02d}:00", n, size=1000 + n))
                index.update_clip("cam", DAY1, base[0].key, motion_score=float(n))   # all on one record
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    clips = index.clips_for_day("cam", DAY1)
    assert len(clips) == 1 + writers * per_writer
    assert index.usage("cam") == DeviceUsage(sum(c.stored_bytes for c in clips), len(clips))


def test_no_plaintext_metadata_at_rest(under_test: IndexUnderTest) -> None:
    record = clip("front door", DAY1, "10:00:00", 4242, motion=True)
    under_test.index.upsert_clip(record)
    under_test.index.set_quarantined("front door", 5)
    under_test.index.close()
    raw = under_test.at_rest()
    secrets = {"key": record.key, "device_id": "front door", "captured_at": record.captured_at,
               "header_hash": record.header_hash, "codec": "avc1.42c01e", "motion": "motion",
               "sealed_size": "sealed_size", "thumb_key": str(record.thumb_key), "agent": "agent_version"}
    for field, secret in secrets.items():
        if field not in under_test.in_clear:
            assert secret.encode() not in raw, secret
        else:   # what the store says it keeps in clear is found: the bytes read are the ones stored
            assert secret.encode() in raw, secret
