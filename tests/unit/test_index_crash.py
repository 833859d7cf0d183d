"""The index writes a day shard and the usage totals as two files: a crash between them must not leave the
quota count wrong (issue 12, finding 10). Functional tier: real files, a simulated power cut."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryospy.functions.index.records import ClipRecord
from cryospy.functions.index.store import TinyDBIndex

KEY = b"k" * 32


def _clip(n: int, size: int) -> ClipRecord:
    return ClipRecord.from_doc({
        "key": f"clips/cam/2026/01/02/20260102T00000{n}.000Z-{n}.cse", "device_id": "cam", "day": "2026-01-02",
        "captured_at": f"2026-01-02T00:00:0{n}.000Z", "sequence": n, "sealed_size": size, "thumb_size": 10})


class PowerCut(BaseException):
    pass


def _cut_before_totals(store: TinyDBIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    def cut(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise PowerCut()
    monkeypatch.setattr(store._totals, "add", cut)


@pytest.mark.parametrize("change", ["insert", "remove"])
def test_a_crash_between_shard_and_totals_is_recounted_by_the_next_start(tmp_path: Path, change: str,
                                                                           monkeypatch: pytest.MonkeyPatch):
    store = TinyDBIndex(tmp_path, lambda: KEY)
    first, second = _clip(1, 1000), _clip(2, 5000)
    store.upsert_clip(first)
    if change == "remove":
        store.upsert_clip(second)
    _cut_before_totals(store, monkeypatch)
    with pytest.raises(PowerCut):            # the shard is written, the process dies before the totals
        if change == "insert":
            store.upsert_clip(second)
        else:
            store.remove_clip("cam", second.day, second.key)
    # The next process (no clean close happened):
    again = TinyDBIndex(tmp_path, lambda: KEY)
    clips = again.clips_for_day("cam", "2026-01-02")
    usage = again.usage("cam")
    assert (usage.bytes, usage.clips) == (sum(c.stored_bytes for c in clips), len(clips))
    assert len(clips) == (2 if change == "insert" else 1)
    again.upsert_clip(_clip(3, 7))          # and it keeps counting from the truth
    assert again.usage("cam").clips == len(clips) + 1


def test_a_clean_close_leaves_no_marker_and_nothing_to_recount(tmp_path: Path):
    store = TinyDBIndex(tmp_path, lambda: KEY)
    store.upsert_clip(_clip(1, 1000))
    assert list((tmp_path / "pending").iterdir())
    store.close()
    assert not list((tmp_path / "pending").iterdir())
    assert TinyDBIndex(tmp_path, lambda: KEY).usage("cam").bytes == 1010
