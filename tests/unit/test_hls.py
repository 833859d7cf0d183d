"""Byte-range HLS playlists: golden text, exact tiling of a real clip, day discontinuities, and live numbering that
stays consistent for a player reloading while clips arrive and slide out.

Playlists are read back here with a small independent parser (``_segments``) rather than by comparing with the
module's own helpers, so a wrong tag order or a wrong number shows up as a wrong segment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryospy.functions.clips.hls import (
    ClipMedia,
    NothingToPlay,
    clip_playlist,
    day_playlist,
    live_playlist,
    multivariant_playlist,
)
from cryospy.functions.clips.mp4 import Fragment, parse_mp4
from tests.support import sample_clip

WHEN = datetime(2025, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
URL = "/media/clip.mp4?key=clips%2Fcam-1%2Fa.cse"


def _clip(
    n: int = 3, *, key: str = "a", start: datetime = WHEN, url: str | None = None, durations: list[float] | None = None
) -> ClipMedia:
    durations = durations or [1.0] * n
    fragments, offset, t = [], 755, 0.0
    for i, d in enumerate(durations):
        size = 1000 + i
        fragments.append(Fragment(offset=offset, size=size, start_s=t, duration_s=d, keyframe=True))
        offset, t = offset + size, t + d
    url = f"/media/clip.mp4?key={key}" if url is None else url
    return ClipMedia(key=key, url=url, captured_at=start, init_size=755, fragments=tuple(fragments), duration_s=t,
                     codec="avc1.4d401e", width=640, height=360)


@dataclass(frozen=True)
class Segment:
    """One media segment as a player sees it: where it comes from and the numbers it carries."""

    url: str
    byterange: str
    map: str
    duration: str
    msn: int
    dsn: int
    pdt: str | None


def _tags(text: str, name: str) -> list[str]:
    return [line.split(":", 1)[1] for line in text.splitlines() if line.startswith(f"#{name}:")]


def _segments(text: str) -> list[Segment]:
    """Parse a media playlist the way RFC 8216 §6.3 tells a client to number its segments."""
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    msn = int(next(iter(_tags(text, "EXT-X-MEDIA-SEQUENCE")), "0"))
    dsn = int(next(iter(_tags(text, "EXT-X-DISCONTINUITY-SEQUENCE")), "0"))
    out: list[Segment] = []
    current_map = duration = byterange = pdt = None
    for line in lines[1:]:
        if line == "#EXT-X-DISCONTINUITY":
            dsn += 1
        elif line.startswith("#EXT-X-MAP:"):
            current_map = line.split(":", 1)[1]
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = line.split(":", 1)[1]
        elif line.startswith("#EXTINF:"):
            duration = line.split(":", 1)[1].rstrip(",")
        elif line.startswith("#EXT-X-BYTERANGE:"):
            byterange = line.split(":", 1)[1]
        elif line and not line.startswith("#"):
            assert current_map and duration and byterange, f"segment {line} lacks a map, duration or range"
            out.append(Segment(line, byterange, current_map, duration, msn, dsn, pdt))
            msn += 1
            duration = byterange = pdt = None
    return out


# ------------------------------------------------------------------------------------------------ clip playlist


GOLDEN_CLIP = """\
#EXTM3U
#EXT-X-VERSION:7
#EXT-X-TARGETDURATION:2
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI="/media/clip.mp4?key=clips%2Fcam-1%2Fa.cse",BYTERANGE="755@0"
#EXT-X-PROGRAM-DATE-TIME:2025-01-02T03:04:05.006Z
#EXTINF:1.000,
#EXT-X-BYTERANGE:1000@755
/media/clip.mp4?key=clips%2Fcam-1%2Fa.cse
#EXTINF:1.000,
#EXT-X-BYTERANGE:1001@1755
/media/clip.mp4?key=clips%2Fcam-1%2Fa.cse
#EXTINF:1.500,
#EXT-X-BYTERANGE:1002@2756
/media/clip.mp4?key=clips%2Fcam-1%2Fa.cse
#EXT-X-ENDLIST
"""


def test_clip_playlist_golden() -> None:
    assert clip_playlist(_clip(url=URL, durations=[1.0, 1.0, 1.5])) == GOLDEN_CLIP


def test_program_date_time_is_utc_whatever_the_zone_given() -> None:
    local = WHEN.astimezone(timezone(timedelta(hours=-5)))
    assert clip_playlist(_clip(url=URL, start=local, durations=[1.0, 1.0, 1.5])) == GOLDEN_CLIP


@pytest.mark.parametrize(
    ("durations", "target"),
    [([1.0, 1.0000001], 1), ([0.2], 1), ([1.0, 1.2], 2), ([2.0004], 2), ([2.0006], 3), ([10.0, 3.0], 10)],
)
def test_target_duration_is_the_ceiling_of_the_longest_extinf_as_written(durations: list[float], target: int) -> None:
    assert _tags(clip_playlist(_clip(durations=durations)), "EXT-X-TARGETDURATION") == [str(target)]


def test_byte_ranges_tile_a_real_clip_exactly() -> None:
    """Init segment plus every fragment cover the file from byte 0 to its end with no gap and no overlap."""
    data = sample_clip(seconds=3.0)
    info = parse_mp4(lambda offset, length: data[offset : offset + length], len(data))
    assert len(info.fragments) >= 3
    text = clip_playlist(ClipMedia.from_mp4(info, key="k", url=URL, captured_at=WHEN))
    (init,) = re.findall(r'BYTERANGE="(\d+)@(\d+)"', text)
    ranges = [(int(init[1]), int(init[0]))] + [
        (int(offset), int(size)) for size, offset in (s.byterange.split("@") for s in _segments(text))
    ]
    position = 0
    for offset, size in ranges:
        assert offset == position and size > 0
        position += size
    assert position == len(data)
    # and every segment starts with a moof, every init with ftyp
    assert data[4:8] == b"ftyp"
    assert all(data[offset + 4 : offset + 8] == b"moof" for offset, _ in ranges[1:])


def test_non_keyframe_fragment_drops_the_independent_segments_promise() -> None:
    clip = _clip()
    odd = replace(clip, fragments=(*clip.fragments[:2], replace(clip.fragments[2], keyframe=False)))
    assert "#EXT-X-INDEPENDENT-SEGMENTS" in clip_playlist(clip)
    assert "#EXT-X-INDEPENDENT-SEGMENTS" not in clip_playlist(odd)


@pytest.mark.parametrize(
    "url",
    ['/media?key="x"', "/media?key=a\nb", "/media?key=a\rb", "#EXT-X-ENDLIST", "", "/media?key=a b", "/m\x00"],
)
def test_unsafe_uris_are_refused_not_escaped(url: str) -> None:
    with pytest.raises(ValueError, match="cannot go into a playlist"):
        _clip(url=url)


def test_clip_media_refuses_what_would_make_a_wrong_playlist() -> None:
    clip = _clip()
    with pytest.raises(ValueError, match="naive"):
        replace(clip, captured_at=datetime(2025, 1, 1))
    with pytest.raises(NothingToPlay, match="plain MP4"):
        replace(clip, fragments=())
    with pytest.raises(ValueError, match="overlaps"):
        replace(clip, fragments=(clip.fragments[1], clip.fragments[0]))
    with pytest.raises(ValueError, match="overlaps"):
        replace(clip, init_size=800)
    with pytest.raises(ValueError, match="duration"):
        replace(clip, fragments=(replace(clip.fragments[0], duration_s=0.0),))
    with pytest.raises(ValueError, match="RFC 6381"):
        replace(clip, codec='avc1"')
    with pytest.raises(NothingToPlay):
        day_playlist([])
    with pytest.raises(NothingToPlay):
        live_playlist([])


# ------------------------------------------------------------------------------------------------- day playlist


def test_day_playlist_orders_clips_and_starts_each_with_discontinuity_map_and_time() -> None:
    a = _clip(2, key="a", start=WHEN)
    b = _clip(3, key="b", start=WHEN + timedelta(minutes=5), durations=[1.0, 2.5, 1.0])
    c = _clip(1, key="c", start=WHEN + timedelta(minutes=9))
    text = day_playlist([c, a, b])  # the caller's order does not matter
    segments = _segments(text)
    assert [s.url for s in segments] == [a.url] * 2 + [b.url] * 3 + [c.url]
    assert text.count("#EXT-X-DISCONTINUITY\n") == 2
    assert _tags(text, "EXT-X-MAP") == [f'URI="{x.url}",BYTERANGE="755@0"' for x in (a, b, c)]
    assert _tags(text, "EXT-X-PROGRAM-DATE-TIME") == [
        "2025-01-02T03:04:05.006Z", "2025-01-02T03:09:05.006Z", "2025-01-02T03:13:05.006Z"
    ]
    assert [s.dsn for s in segments] == [0, 0, 1, 1, 1, 2]
    assert _tags(text, "EXT-X-TARGETDURATION") == ["3"]
    assert _tags(text, "EXT-X-PLAYLIST-TYPE") == ["VOD"]
    assert text.endswith("#EXT-X-ENDLIST\n")
    # the discontinuity comes before the new map, as RFC 8216 §4.3.2.5 wants
    assert text.index("#EXT-X-DISCONTINUITY") < text.index(f'URI="{b.url}"')


def test_day_playlist_refuses_a_clip_listed_twice() -> None:
    with pytest.raises(ValueError, match="listed twice"):
        day_playlist([_clip(key="a"), _clip(key="a")])


# ------------------------------------------------------------------------------------------------ live playlist


def test_live_playlist_shape() -> None:
    a = _clip(3, key="a", start=WHEN)
    b = _clip(3, key="b", start=WHEN + timedelta(seconds=3))
    text = live_playlist([a, b], window_segments=4, media_sequence_base=10, discontinuity_sequence_base=5)
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PLAYLIST-TYPE" not in text
    assert _tags(text, "EXT-X-MEDIA-SEQUENCE") == ["12"]  # 2 of a's 3 segments slid out
    assert _tags(text, "EXT-X-DISCONTINUITY-SEQUENCE") == ["5"]  # the window still starts inside a
    segments = _segments(text)
    assert [(s.url, s.msn, s.dsn) for s in segments] == [
        (a.url, 12, 5), (b.url, 13, 6), (b.url, 14, 6), (b.url, 15, 6)
    ]
    # entering a clip mid-way: its own init segment, and the wall-clock time of that fragment, not of the clip
    assert segments[0].map == f'URI="{a.url}",BYTERANGE="755@0"'
    assert segments[0].pdt == "2025-01-02T03:04:07.006Z"
    assert segments[1].pdt == "2025-01-02T03:04:08.006Z"


def test_live_playlist_is_identical_across_requests_and_advances_by_what_slid_out() -> None:
    clips = [_clip(3, key=f"c{i}", start=WHEN + timedelta(seconds=3 * i)) for i in range(4)]
    first = live_playlist(clips[:3], window_segments=5)
    assert live_playlist(clips[:3], window_segments=5) == first
    assert live_playlist(list(reversed(clips[:3])), window_segments=5) == first
    second = live_playlist(clips[:4], window_segments=5)
    assert _tags(first, "EXT-X-MEDIA-SEQUENCE") == ["4"] and _tags(second, "EXT-X-MEDIA-SEQUENCE") == ["7"]
    assert _tags(first, "EXT-X-DISCONTINUITY-SEQUENCE") == ["1"]
    assert _tags(second, "EXT-X-DISCONTINUITY-SEQUENCE") == ["2"]
    # no discontinuity tag before the first segment: it would count that boundary twice
    assert "#EXT-X-DISCONTINUITY\n" not in second.split("#EXTINF", 1)[0]


def test_live_window_larger_than_history_lists_everything() -> None:
    text = live_playlist([_clip(2)], window_segments=30, media_sequence_base=3, discontinuity_sequence_base=1)
    assert [s.msn for s in _segments(text)] == [3, 4]
    assert _tags(text, "EXT-X-DISCONTINUITY-SEQUENCE") == ["1"]


def test_live_playlist_target_duration_covers_every_clip_passed() -> None:
    """It must not change while a long fragment slides out of the window (RFC 8216 §6.2.1)."""
    old = _clip(1, key="old", durations=[4.0])
    new = _clip(3, key="new", start=WHEN + timedelta(seconds=4))
    assert _tags(live_playlist([old, new], window_segments=2), "EXT-X-TARGETDURATION") == ["4"]


def test_live_playlist_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="window_segments"):
        live_playlist([_clip()], window_segments=0)
    with pytest.raises(ValueError, match="bases"):
        live_playlist([_clip()], media_sequence_base=-1)


@settings(max_examples=100, deadline=None)
@given(
    counts=st.lists(st.integers(1, 6), min_size=1, max_size=12),
    window=st.integers(1, 12),
    keep=st.integers(1, 5),
)
def test_a_reloading_player_sees_every_segment_keep_its_numbers(counts: list[int], window: int, keep: int) -> None:
    """Simulate a device's clips arriving one by one. After each, the server passes only its ``keep`` newest clips
    with the bases the index would hold for the oldest of them. For every pair of consecutive playlists, a
    segment present in both must carry the same media and discontinuity sequence numbers, and the window only
    moves forward.
    """
    clips = [_clip(n, key=f"c{i:02d}", start=WHEN + timedelta(minutes=i)) for i, n in enumerate(counts)]
    previous: dict[tuple[str, str], Segment] = {}
    previous_first = -1
    for arrived in range(1, len(clips) + 1):
        oldest = max(0, arrived - keep)
        text = live_playlist(
            clips[oldest:arrived],
            window_segments=window,
            media_sequence_base=sum(counts[:oldest]),
            discontinuity_sequence_base=oldest,
        )
        segments = _segments(text)
        assert 1 <= len(segments) <= window
        current = {(s.url, s.byterange): s for s in segments}
        for ident in current.keys() & previous.keys():
            assert (current[ident].msn, current[ident].dsn) == (previous[ident].msn, previous[ident].dsn)
        assert segments[0].msn >= previous_first
        # numbers are global: the n-th fragment ever recorded is segment n, in clip k's discontinuity domain k
        for s in segments:
            clip_index = int(s.url.rsplit("=c", 1)[1])
            assert s.dsn == clip_index
        assert segments[-1].msn == sum(counts[:arrived]) - 1
        previous, previous_first = current, segments[0].msn


# ----------------------------------------------------------------------------------------- multivariant playlist


def test_multivariant_playlist_golden() -> None:
    a = _clip(2, key="a", durations=[1.0, 0.5])  # 1000 B in 1 s, 1001 B in 0.5 s
    assert multivariant_playlist([a], media_playlist_url="/hls/day.m3u8?device=cam-1") == (
        "#EXTM3U\n"
        "#EXT-X-VERSION:7\n"
        "#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=16016,AVERAGE-BANDWIDTH=10672,CODECS="avc1.4d401e",RESOLUTION=640x360\n'
        "/hls/day.m3u8?device=cam-1\n"
    )
    with pytest.raises(ValueError, match="cannot go into a playlist"):
        multivariant_playlist([a], media_playlist_url="x\n#EXT-X-ENDLIST")

