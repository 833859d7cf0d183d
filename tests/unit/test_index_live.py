"""The index numbers each device's clips into a live stream, which the live playlist's sequence numbers rest on."""

from __future__ import annotations

import os
from pathlib import Path

from cryospy.functions.clips.hls import live_playlist
from cryospy.functions.index.records import ClipRecord
from cryospy.functions.index.store import TinyDBIndex
from cryospy.web.media_routes import clip_media


def record(minute: int, fragments: int = 3, device: str = "cam") -> ClipRecord:
    stamp = f"2026-01-02T03:{minute:02d}:00.000Z"
    return ClipRecord.from_doc({
        "key": f"clips/{device}/2026/01/02/20260102T03{minute:02d}00.000Z-{minute}.cse", "device_id": device,
        "day": "2026-01-02", "captured_at": stamp, "sequence": minute, "duration_s": float(fragments),
            "init_size": 800, "codec": "avc1.42c01e", "width": 320, "height": 180, "sealed_size": 10_000,
            "fragments": [[800 + i * 1000, 1000, float(i), 1.0] for i in range(fragments)]})


def test_new_clips_are_numbered_in_order_and_late_ones_stay_out(tmp_path: Path) -> None:
    key = os.urandom(32)
    index = TinyDBIndex(tmp_path, lambda: key)
    for minute, frags in ((1, 3), (2, 2), (4, 5)):
        index.upsert_clip(record(minute, frags))
    index.upsert_clip(record(3, 4))                       # arrives late (spooled during an outage)
    index.upsert_clip(record(0).changed(fragments=()))   # nothing playable: never in the live stream
    live = [c.live for c in index.live_clips("cam")]
    assert live == [(0, 0), (3, 1), (5, 2)]
    late = index.get_clip("cam", "2026-01-02", record(3).key)
    assert late is not None and late.live is None
    # Marking a clip as evidence (an update) keeps its number; a replayed event changes nothing.
    index.update_clip("cam", "2026-01-02", record(2).key, protected=True)
    index.upsert_clip(record(2, 2))
    assert [c.live for c in index.live_clips("cam")] == [(0, 0), (3, 1), (5, 2)]
    assert index.usage("cam").clips == 5


def test_the_playlist_keeps_segment_numbers_as_clips_slide_in(tmp_path: Path) -> None:
    key = os.urandom(32)
    index = TinyDBIndex(tmp_path, lambda: key)

    def playlist(count: int) -> str:
        clips = index.live_clips("cam", count)
        base = clips[0].live
        assert base is not None
        return live_playlist([clip_media(c) for c in clips], window_segments=4,
                             media_sequence_base=base[0], discontinuity_sequence_base=base[1])

    index.upsert_clip(record(1, 3))
    index.upsert_clip(record(2, 3))
    before = playlist(4)
    index.upsert_clip(record(3, 3))
    after, fewer_clips_passed = playlist(4), playlist(2)
    assert "#EXT-X-MEDIA-SEQUENCE:2" in before and "#EXT-X-MEDIA-SEQUENCE:5" in after
    assert "#EXT-X-DISCONTINUITY-SEQUENCE:0" in before and "#EXT-X-DISCONTINUITY-SEQUENCE:1" in after
    assert after == fewer_clips_passed                    # the same window, whichever clips are passed
