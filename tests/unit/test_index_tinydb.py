"""The TinyDB store beyond the shared conformance suite: it opens index files written before typed records
existed, and its retention cursor keeps a run of protected days from being read on every new clip.
Functional tier: real files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cryospy.functions.index.records import DeviceUsage, IndexedFragment, SourceGap
from cryospy.functions.index.store import TinyDBIndex
from tests.unit.test_index_conformance import clip

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"
FIXTURE_KEY = b"f" * 32   # the fixture was written by the index of main at 3321d1f (dict records)


@pytest.fixture
def old_index(tmp_path: Path) -> TinyDBIndex:
    shutil.copytree(FIXTURE, tmp_path / "index")
    return TinyDBIndex(tmp_path / "index", lambda: FIXTURE_KEY)


def test_an_index_written_before_typed_records_opens_unchanged(old_index: TinyDBIndex) -> None:
    assert old_index.devices() == ["cam 1", "cam2"]
    assert old_index.days("cam 1") == ["2026-01-02", "2026-01-03"]
    a, b = old_index.clips_for_day("cam 1", "2026-01-02", with_fragments=True)
    assert (a.sequence, a.sealed_size, a.thumb_key, a.motion, a.motion_intervals, a.peak_s, a.live) == \
        (1, 1000, "thumbs/a.jpg.cse", True, ((0.5, 1.5),), 1.0, (0, 0))
    assert a.fragments == (IndexedFragment(700, 100, 0.0, 1.0), IndexedFragment(800, 100, 1.0, 1.0)) and a.agent == {
        "agent_version": "0.9"}
    assert b.protected and b.live == (2, 1) and b.source_gap == SourceGap("2026-01-02T00:00:30Z",
                                                                        "2026-01-02T00:00:50Z", "rtsp")
    tomb = old_index.get_clip("cam 1", "2026-01-03", "clips/cam 1/2026-01-03/c.cse")
    assert tomb is not None and tomb.missing and tomb.missing_since == "2026-01-04T00:00:00Z" and tomb.chain == "gap"
    assert old_index.usage("cam 1") == DeviceUsage(3050, 3, 77)
    # A record from before the fragment log: fragments inline, no count. It reads, plays, and moves its
    # fragments to the log the first time it is written.
    z = old_index.get_clip("cam2", "2025-12-31", "clips/cam2/2025-12-31/z.cse")
    assert z is not None and z.fragment_count == 1 and z.playable and z.fps == 10.0
    assert old_index.update_clip("cam2", "2025-12-31", z.key, protected=True) is not None
    moved = old_index.get_clip("cam2", "2025-12-31", z.key)
    assert moved is not None and moved.protected and moved.fragments == (IndexedFragment(600, 50, 0.0, 1.0),)
    assert old_index.usage() == DeviceUsage(3550, 4, 77)


def test_the_old_index_keeps_numbering_its_live_stream(old_index: TinyDBIndex) -> None:
    new = clip("cam 1", "2026-01-03", "05:00:00", 4, fragments=3)
    old_index.upsert_clip(new)
    got = old_index.get_clip("cam 1", "2026-01-03", new.key)
    assert got is not None and got.live == (3, 2)        # after the fixture's 2 live clips and 3 segments


def test_protected_days_are_read_once_not_on_every_walk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = TinyDBIndex(tmp_path, lambda: b"k" * 32)
    evidence = [clip("cam", f"2026-01-{d:02d}", "01:00:00", d, protected=True) for d in range(1, 6)]
    for record in [*evidence, clip("cam", "2026-01-09", "01:00:00", 9)]:
        index.upsert_clip(record)
    read: list[str] = []
    original = index.clips_for_day
    monkeypatch.setattr(index, "clips_for_day", lambda d, day, **kw: read.append(day) or original(d, day, **kw))
    assert [r.sequence for r in index.oldest_unprotected("cam")] == [9]
    assert read.count("2026-01-01") == 2                  # the walk, and the check under the lock before moving on
    read.clear()
    assert [r.sequence for r in index.oldest_unprotected("cam")] == [9]
    assert read == ["2026-01-09"]
    # Unprotecting evidence moves the cursor back to its day.
    index.update_clip("cam", "2026-01-03", evidence[2].key, protected=False)
    assert [r.sequence for r in index.oldest_unprotected("cam")] == [3, 9]


def test_a_crash_drops_the_cursor_so_the_walk_starts_from_the_oldest_day(tmp_path: Path) -> None:
    index = TinyDBIndex(tmp_path, lambda: b"k" * 32)
    old = clip("cam", "2026-01-01", "01:00:00", 1, protected=True)
    index.upsert_clip(old)
    index.upsert_clip(clip("cam", "2026-01-05", "01:00:00", 5))
    list(index.oldest_unprotected("cam"))                 # the cursor moves past the protected day
    # The next process (no clean close: the markers are still there) recounts and forgets the cursor, so an
    # unprotected clip written to that day just before the crash is found.
    again = TinyDBIndex(tmp_path, lambda: b"k" * 32)
    assert again._totals.cursor("cam") == "" and again.usage("cam").clips == 2
