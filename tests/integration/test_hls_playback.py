"""Byte-range HLS end to end: real clips, sealed with a real key store, served over HTTP, played by real ffmpeg.

The server is the smallest honest stand-in for the dashboard's media route: a threaded WSGI server on loopback
whose media URL answers through :func:`serve_sealed_range`, reading the sealed file on disk through a window
that stops at the requested range (as a MinIO ranged GET would), and whose playlist URLs return
:mod:`cryospy.functions.clips.hls` output. ffmpeg's HLS demuxer plays each playlist and prints one MD5 per decoded
frame (``framemd5``) or one CRC per demuxed sample (``framecrc`` with ``-c copy``); those must equal what
ffmpeg reports for the plaintext clips read directly from disk.

Two ffmpeg quirks, both reproduced against a plain, unsealed range server and a local file, so neither is
ours (browsers and hls.js fetch each ``EXT-X-BYTERANGE`` separately and reset their demuxer at a
discontinuity):

* when consecutive segments share one URI, ffmpeg >= 7 asks for the rest of the file once and keeps reading
  that response, and then decodes only the first segment. ``-http_seekable 0`` makes it request each segment
  on its own, which is what every other player does;
* its HLS demuxer feeds every clip of a playlist to one MP4 demuxer. At a discontinuity the second clip's
  timestamps restart at zero, and that demuxer marks the first fragment after the reset as "discard", so the
  decoder drops its frames (a plain concatenation of the two files loses the same 15 frames). The day test
  therefore proves delivery sample by sample (every sample of every segment arrives, bit-exact, in order) and
  accepts exactly that one dropped fragment in the decoded frames.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs, quote
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import ffmpeg
import pytest

from cryospy.common.ffmpeg_tool import run_ffmpeg
from cryospy.common.keys import KeyStore, UnlockedKeys, generate_device_signing_key
from cryospy.common.objectkeys import legacy_clip_key
from cryospy.common.sealed import MAX_HEADER_SIZE, ZERO_HASH, seal
from cryospy.edge_agent.synthetic import make_sample_video
from cryospy.functions.clips.hls import PLAYLIST_CONTENT_TYPE, ClipMedia, clip_playlist, day_playlist, live_playlist
from cryospy.functions.clips.mp4 import parse_mp4_file
from cryospy.web.media import serve_sealed_range

pytestmark = pytest.mark.integration

SECONDS, WIDTH, HEIGHT, FPS = 6, 320, 180, 15  # the encoder's default: a keyframe (and a fragment) every 1 s
FRAMES = SECONDS * FPS
CHUNK = 8192  # small sealed chunks, so every segment spans several and most ranges start mid-chunk
START = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)
PASSPHRASE = "hls test passphrase"
# The path ends in the media's real extension: ffmpeg's HLS demuxer refuses a segment URL whose extension does
# not match what it finds inside, and looks at the path only (the object key ends in .cse, and sits in the query).
MEDIA_PATH = "/media/clip.mp4"
LIVE_WINDOW = 4


@dataclass(frozen=True)
class SealedClip:
    media: ClipMedia
    plain: Path
    sealed: Path


@dataclass(frozen=True)
class Deployment:
    clips: list[SealedClip]
    keys: UnlockedKeys
    device_public: Any


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _FileWindow:
    """Sealed bytes ``[first, last]`` of a file, read lazily, so a client that hangs up stops the reading."""

    def __init__(self, path: Path, first: int, last: int) -> None:
        self._file = path.open("rb")
        self._file.seek(first)
        self._left = last - first + 1

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        data = self._file.read(size)
        self._left -= len(data)
        return data

    def close(self) -> None:
        self._file.close()


class MediaSite:
    """The WSGI app: three playlists and the media URL; remembers every sealed range it was asked to fetch."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.by_key = {c.media.key: c for c in deployment.clips}
        self.fetches: list[tuple[int, int]] = []
        self._lock = threading.Lock()
        media = [c.media for c in deployment.clips]
        self.playlists = {
            "/clip.m3u8": clip_playlist(media[0]),
            "/day.m3u8": day_playlist(media),
            "/live.m3u8": live_playlist(media, window_segments=LIVE_WINDOW, media_sequence_base=100,
                                        discontinuity_sequence_base=7),
        }

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == MEDIA_PATH:
            return self.media(environ, start_response)
        if path not in self.playlists:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        body = self.playlists[path].encode()
        start_response("200 OK", [("Content-Type", PLAYLIST_CONTENT_TYPE), ("Content-Length", str(len(body)))])
        return [body]

    def media(self, environ: dict[str, Any], start_response: Any) -> Any:
        key = parse_qs(environ.get("QUERY_STRING", "")).get("key", [""])[0]
        sealed = self.by_key[key].sealed

        def header_fetch() -> bytes:
            with sealed.open("rb") as handle:
                return handle.read(MAX_HEADER_SIZE)

        def range_fetch(first: int, last: int) -> _FileWindow:
            with self._lock:
                self.fetches.append((first, last))
            return _FileWindow(sealed, first, last)

        response = serve_sealed_range(
            header_fetch=header_fetch,
            range_fetch=range_fetch,
            object_size=sealed.stat().st_size,
            keyring=self.deployment.keys,
            signer_public_key=self.deployment.device_public,
            expected_object_key=key,
            range_header=environ.get("HTTP_RANGE"),
            content_type="video/mp4",
        )
        start_response(response.status_line, response.headers)
        return response.body


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    tmp = tmp_path_factory.mktemp("hls")
    store = KeyStore.create(tmp / "keys.json", PASSPHRASE, scrypt_n=2**10, insecure_for_tests=True)
    device = generate_device_signing_key()
    clips: list[SealedClip] = []
    prev_hash = ZERO_HASH
    for seq in (1, 2):
        captured_at = START + timedelta(seconds=(seq - 1) * SECONDS)
        key = legacy_clip_key("porch cam", captured_at, seq).key   # self-contained: no registry
        plain = make_sample_video(tmp / f"clip{seq}.mp4", seconds=SECONDS, width=WIDTH, height=HEIGHT, fps=FPS,
                                  seed=seq)
        sealed = tmp / f"clip{seq}.cse"
        with plain.open("rb") as src, sealed.open("wb") as dst:
            header = seal(src, dst, object_key=key, device_id="porch cam", sequence=seq, captured_at=captured_at,
                          content_type="video/mp4", prev_hash=prev_hash, recipient=store.current_public_key(),
                          signer=device, chunk_size=CHUNK)
        prev_hash = header.header_hash
        media = ClipMedia.from_mp4(parse_mp4_file(plain), key=key, url=f"{MEDIA_PATH}?key={quote(key, safe='')}",
                                   captured_at=captured_at)
        clips.append(SealedClip(media, plain, sealed))
    return Deployment(clips, store.unlock(PASSPHRASE), device.public_key())


@pytest.fixture(scope="module")
def site(deployment: Deployment) -> Iterator[tuple[str, MediaSite]]:
    app = MediaSite(deployment)
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="hls-test-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _ffmpeg_rows(source: str, output: dict[str, str], *,
                 input_options: dict[str, str] | None = None) -> list[list[str]]:
    """Run ffmpeg on ``source`` (a file or a playlist URL) and return its per-frame/per-packet rows."""
    options = dict(input_options or {})
    if source.startswith("http"):
        options["http_seekable"] = "0"  # see the module docstring
    out = run_ffmpeg(
        ffmpeg.input(source, **options)["v:0"].output("-", **output).global_args("-v", "error"),
        what=f"playing {source}",
        timeout=120,
    )
    rows = [line for line in out.decode().splitlines() if line and not line.startswith("#")]
    return [[field.strip() for field in row.split(",")] for row in rows]


def _frame_md5s(source: str, **kwargs: Any) -> list[str]:
    """One MD5 per decoded frame, in presentation order."""
    return [row[5] for row in _ffmpeg_rows(source, {"f": "framemd5"}, **kwargs)]


def _samples(source: str) -> list[tuple[str, str]]:
    """(size, CRC) of every demuxed video sample, without decoding."""
    return [(row[4], row[5]) for row in _ffmpeg_rows(source, {"c": "copy", "f": "framecrc"})]


def test_clip_playlist_decodes_every_frame(site: tuple[str, MediaSite], deployment: Deployment) -> None:
    base, app = site
    first = deployment.clips[0]
    expected = _frame_md5s(str(first.plain))
    assert len(expected) == FRAMES
    app.fetches.clear()
    assert _frame_md5s(f"{base}/clip.m3u8") == expected
    # One request for the init segment and one per fragment; no sealed fetch covered the header or trailer.
    assert len(app.fetches) == 1 + len(first.media.fragments)
    size = first.sealed.stat().st_size
    assert all(0 < lo <= hi < size - 64 for lo, hi in app.fetches)


def test_day_playlist_delivers_every_sample_across_the_discontinuity(
    site: tuple[str, MediaSite], deployment: Deployment
) -> None:
    base, _ = site
    plain = [str(c.plain) for c in deployment.clips]
    assert _samples(f"{base}/day.m3u8") == [sample for path in plain for sample in _samples(path)]
    expected = [md5 for path in plain for md5 in _frame_md5s(path)]
    decoded = _frame_md5s(f"{base}/day.m3u8")
    # All of clip 1; all of clip 2, or all but its first fragment, which ffmpeg's MP4 demuxer discards after the
    # timestamp reset (module docstring). Any other loss, duplicate or reordering fails.
    assert decoded in (expected, expected[:FRAMES] + expected[FRAMES + FPS :])


def test_live_playlist_plays_its_window(site: tuple[str, MediaSite], deployment: Deployment) -> None:
    """The window is the newest clip's last 4 one-second fragments. ffmpeg starts at its first segment
    (``-live_start_index 0``) and, since the playlist never grows, gives up after a few reloads that bring
    nothing new (``-m3u8_hold_counters``; ffmpeg counts its first visit too, so 1 would stop after 2 segments).
    """
    base, _ = site
    newest = _frame_md5s(str(deployment.clips[-1].plain))
    options = {"live_start_index": "0", "m3u8_hold_counters": "3"}
    live = _frame_md5s(f"{base}/live.m3u8", input_options=options)
    assert live == newest[-LIVE_WINDOW * FPS :]


def test_media_url_answers_an_exact_range_over_http(site: tuple[str, MediaSite], deployment: Deployment) -> None:
    base, _ = site
    clip = deployment.clips[1]
    plain = clip.plain.read_bytes()
    request = urllib.request.Request(base + clip.media.url, headers={"Range": "bytes=8000-20000"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 206
        assert response.headers["Content-Range"] == f"bytes 8000-20000/{len(plain)}"
        assert response.headers["Cache-Control"] == "private, max-age=300"
        assert response.read() == plain[8000:20001]
