"""Fragment tables live beside the index shards, one append-only sealed line per clip: the day's records stay
small, playback still gets every clip's fragments, and a crash mid-append loses nothing indexed."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryospy.functions.index.records import fragments_from
from cryospy.functions.index.store import TinyDBIndex
from cryospy.functions.index.tinydb_files import EncryptedJSONStorage
from cryospy.functions.index.usage import dir_name
from tests.unit.test_index_live import record


def _store(tmp_path: Path) -> tuple[TinyDBIndex, bytes]:
    key = os.urandom(32)
    return TinyDBIndex(tmp_path, lambda: key), key


def test_records_keep_a_count_and_reads_join_the_fragments(tmp_path: Path) -> None:
    index, key = _store(tmp_path)
    clip = record(1, fragments=60)
    index.upsert_clip(clip)
    shard = tmp_path / "clips" / dir_name("cam") / "2026-01-02.db"
    stored = next(iter(EncryptedJSONStorage(shard, key=key).read()["clips"].values()))
    assert "fragments" not in stored and stored["fragment_count"] == 60
    assert index.get_clip("cam", "2026-01-02", clip.key).fragments == clip.fragments
    assert index.clips_for_day("cam", "2026-01-02")[0].fragments is None
    assert index.clips_for_day("cam", "2026-01-02", with_fragments=True)[0].fragments == clip.fragments
    log = tmp_path / "fragments" / dir_name("cam") / "2026-01-02.log"
    assert b"800" not in log.read_bytes() and oct(log.stat().st_mode & 0o777) == "0o600"   # sealed, private


def test_updates_and_replays_append_nothing_and_a_new_table_wins(tmp_path: Path) -> None:
    index, _ = _store(tmp_path)
    clip = record(1)
    index.upsert_clip(clip)
    log = tmp_path / "fragments" / dir_name("cam") / "2026-01-02.log"
    size = log.stat().st_size
    index.upsert_clip(clip)                                               # a replayed event
    index.update_clip("cam", "2026-01-02", clip.key, protected=True)
    assert log.stat().st_size == size
    index.upsert_clip(clip.changed(fragments=fragments_from([[900, 5, 0.0, 1.0]])))
    assert index.get_clip("cam", "2026-01-02", clip.key).fragments == fragments_from([[900, 5, 0.0, 1.0]])


def test_a_torn_line_is_skipped_and_lines_are_bound_to_their_day(tmp_path: Path) -> None:
    index, _ = _store(tmp_path)
    first, second = record(1), record(2)
    index.upsert_clip(first)
    log = tmp_path / "fragments" / dir_name("cam") / "2026-01-02.log"
    good = log.read_bytes()
    index.upsert_clip(second)
    with log.open("ab") as fh:
        fh.write(log.read_bytes()[len(good):][:-20])                     # a crash mid-append
    assert index.get_clip("cam", "2026-01-02", second.key).fragments == second.fragments
    other_day = tmp_path / "fragments" / dir_name("cam") / "2026-01-03.log"
    other_day.write_bytes(good)                                           # a line moved to another day
    assert index.fragments.day(dir_name("cam"), "2026-01-03") == {}
    assert json.loads(json.dumps(index.fragments.day(dir_name("cam"), "2026-01-02")))[first.key]


def test_the_table_goes_with_the_last_clip_of_its_day_and_with_the_device(tmp_path: Path) -> None:
    index, _ = _store(tmp_path)
    a, b = record(1), record(2)
    index.upsert_clip(a)
    index.upsert_clip(b)
    log = tmp_path / "fragments" / dir_name("cam") / "2026-01-02.log"
    index.remove_clip("cam", "2026-01-02", a.key)
    assert log.exists()
    index.remove_clip("cam", "2026-01-02", b.key)
    assert not log.exists()
    index.upsert_clip(record(3))
    index.drop_device("cam")
    assert not (tmp_path / "fragments" / dir_name("cam")).exists()
