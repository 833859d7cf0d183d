"""Live view without a server: part keys, the runtime's viewer/part hub, the live playlist, the sweep's rule, and
the agent cutting fragments out of a clip file while it grows (a real x264 clip, fed in pieces)."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cryospy.common.liveparts import new_live_part_key, parse_live_part_key
from cryospy.common.objectkeys import ObjectKeyError
from cryospy.edge_agent.live_view import ClipTail
from cryospy.functions.clips.mp4 import parse_mp4
from cryospy.functions.live.hub import LiveHub, ParsedPart
from cryospy.infra.live_sweep import due
from cryospy.web.live_media import parts_playlist
from tests.support import sample_clip

T0 = datetime(2026, 5, 1, 8, 0, 0, tzinfo=UTC)


def test_part_keys_round_trip_and_anything_else_is_refused() -> None:
    key = new_live_part_key("front door", T0 + timedelta(microseconds=123456), "0123456789abcdef")
    assert key.key == "live/front door/20260501T080000.123Z-0123456789abcdef.cse"
    assert parse_live_part_key(key.key) == key
    assert len(new_live_part_key("cam", T0).token) == 16
    assert new_live_part_key("cam", T0) != new_live_part_key("cam", T0)
    tail = "0123456789abcdef.cse"
    for bad in ("clips/cam/2026/05/01/20260501T080000.000Z-0.cse", "live/cam/20260501T080000.000Z-0123.cse",
                f"live/../20260501T080000.000Z-{tail}", f"live/cam/x/20260501T080000.000Z-{tail}",
                f"live/cam/20260501T080000.000Z-{tail.upper()}", f"live/cam/20261301T080000.000Z-{tail}", 42):
        with pytest.raises(ObjectKeyError):
            parse_live_part_key(bad)


def _parsed(key: str, start: float, init: bytes = b"init-a", duration: float = 1.0) -> ParsedPart:
    return ParsedPart(key=key, captured_at=T0 + timedelta(seconds=start), duration_s=duration, start_s=start,
                      init_size=len(init), init_digest=hashlib.sha256(init).digest(), fragment_offset=len(init),
                      fragment_size=100, sealed_size=500, codec="avc1.4d400c")


def test_hub_numbers_parts_and_counts_a_new_clip_as_a_discontinuity() -> None:
    hub = LiveHub(window=3)
    for i in range(3):
        hub.add_part("cam", _parsed(f"k{i}", float(i)))
    hub.add_part("cam", _parsed("k3", 0.0, init=b"init-b"))        # a new clip: new init, time starts again
    hub.add_part("cam", _parsed("k4", 1.0, init=b"init-b"))
    hub.add_part("cam", _parsed("k4", 1.0, init=b"init-b"))        # reported twice: once
    parts = hub.parts("cam")
    assert [(p.key, p.media_sequence, p.discontinuity, p.map_key) for p in parts] == [
        ("k2", 2, 0, "k0"), ("k3", 3, 1, "k3"), ("k4", 4, 1, "k3")]
    assert hub.init_holder("cam", "k0").key == "k2"                 # k0 slid out; k2 carries the same init
    text = parts_playlist("cam", parts)
    assert "#EXT-X-MEDIA-SEQUENCE:2\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n" in text
    assert text.count("#EXT-X-MAP:") == 2 and text.count("#EXT-X-DISCONTINUITY\n") == 1
    assert "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T08:00:02.000Z\n#EXTINF:1.000," in text
    assert "key=k0&p=init" in text and "key=k3&p=init" in text and "key=k4&p=frag" in text
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-TARGETDURATION:1\n" in text


def test_hub_offers_only_fresh_parts() -> None:
    now = [100.0]
    hub = LiveHub(fresh_s=5.0, clock=lambda: now[0])
    hub.add_part("cam", _parsed("old", 0.0))
    now[0] += 6
    hub.add_part("cam", _parsed("new", 1.0))
    assert [p.key for p in hub.parts("cam")] == ["new"] and hub.parts("other") == []


def test_a_viewer_wakes_the_long_poll_at_once_and_the_grace_period_ends_it() -> None:
    hub = LiveHub(grace_s=0.3)
    answers: list[tuple[bool, bool, float]] = []

    def poll(known: bool) -> None:
        t0 = time.monotonic()
        watch, waited = hub.wait_for_change("cam", known, 5.0)
        answers.append((watch, waited, time.monotonic() - t0))

    waiter = threading.Thread(target=poll, args=(False,))
    waiter.start()
    time.sleep(0.2)
    hub.viewer_seen("cam")
    waiter.join(2)
    assert answers[0][:2] == (True, True) and 0.15 < answers[0][2] < 0.5
    poll(True)                                  # nobody asks again: false once the grace period is over
    assert answers[1][:2] == (False, True) and 0.2 < answers[1][2] < 0.8
    hub.viewer_seen("cam")
    hub.viewer_seen("cam")                      # ten viewers or one: the agent sees one boolean
    assert hub.wait_for_change("cam", False, 5.0) == (True, True)


def test_polls_beyond_the_waiting_limit_are_answered_at_once() -> None:
    hub = LiveHub(max_waiters=1)
    holder = threading.Thread(target=hub.wait_for_change, args=("a", False, 1.0))
    holder.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert hub.wait_for_change("b", False, 5.0) == (False, False)
    assert time.monotonic() - t0 < 0.1
    holder.join(2)


def test_the_sweep_ages_parts_by_their_slot_and_strangers_by_their_upload() -> None:
    key = new_live_part_key("cam", T0).key
    assert not due(key, T0 + timedelta(hours=1), T0 + timedelta(seconds=119))
    assert due(key, T0, T0 + timedelta(seconds=121))
    assert not due("live/cam/whatever.bin", T0, T0 + timedelta(seconds=119))
    assert due("live/cam/whatever.bin", T0, T0 + timedelta(seconds=121))


def test_the_tail_cuts_whole_fragments_from_a_growing_clip_and_dates_them(tmp_path: Path) -> None:
    clip = sample_clip(seconds=3.0, width=160, height=96)
    info = parse_mp4(lambda o, n: clip[o:o + n], len(clip))
    assert len(info.fragments) >= 3
    now = [T0]
    tail = ClipTail(tmp_path, utc=lambda: now[0])
    tail.scan()                                           # nothing yet; this listing dates the file
    now[0] = T0 + timedelta(seconds=0.2)
    path = tmp_path / "clip-000000.mp4"
    (tmp_path / "session-000001").mkdir()
    (tmp_path / "session-000001-clip-000002.mp4").write_bytes(clip)   # a kept passthrough clip: not followed
    got = []
    with open(path, "wb") as fh:
        for end in range(0, len(clip) + 997, 997):        # ffmpeg writes; the tail reads whatever is there
            fh.write(clip[end - 997 if end else 0:end] if end else b"")
            fh.flush()
            tail.scan()
            got += tail.read()
        fh.write(clip[len(clip) - len(clip) % 997:])
    tail.scan()
    got += tail.read()
    assert list(tail.files) == [path]
    assert [g.fragment for g in got] == [clip[f.offset:f.offset + f.size] for f in info.fragments]
    assert all(g.init == clip[:info.init_size] and g.started == T0 for g in got)
    path.unlink()
    tail.scan()
    assert tail.files == {}
