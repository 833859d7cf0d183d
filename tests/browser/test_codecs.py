"""Codecs in the real browser: a clip with camera sound plays with its audio decoded, and an H.265 clip plays
where Chromium decodes HEVC or, where it cannot, the player says so and points to download and export instead
of showing a black box. Real runtime, MinIO, ffmpeg (libx265, AAC) and Debian's Chromium."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import ffmpeg
import pytest

from cryospy.common.ffmpeg_tool import run_ffmpeg
from cryospy.web.builder import day_page
from tests.support import FakeCamera, clip_place, wait_for

from .conftest import login

pytestmark = pytest.mark.integration

FRAGMENTED = {"movflags": "+frag_keyframe+empty_moov+default_base_moof", "f": "mp4"}


def _clip(path: Path, video: dict[str, str], audio: dict[str, str] | None = None) -> bytes:
    """A 3 s fragmented MP4 like the agent's (a keyframe a second), made by ffmpeg from test sources."""
    streams = [ffmpeg.input("testsrc2=size=320x180:rate=15:duration=3", f="lavfi")]
    if audio:
        streams.append(ffmpeg.input("sine=frequency=1000:duration=3", f="lavfi"))
    options: dict[str, str | None] = {**video, "g": "15", "pix_fmt": "yuv420p", **(audio or {"an": None}), **FRAGMENTED}
    run_ffmpeg(ffmpeg.output(*streams, str(path), **options).global_args("-v", "error").overwrite_output(),
               what="making a test clip")
    return path.read_bytes()


def test_sound_plays_and_an_h265_clip_never_plays_as_a_black_box(browser, runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "codec-cam", tmp_path)
    with_sound = camera.upload(_clip(tmp_path / "aac.mp4", {"c:v": "libx264", "bf": "0"},
                                     {"c:a": "aac", "b:a": "64k"}))
    camera.t0 += timedelta(seconds=10)
    hevc = camera.upload(_clip(tmp_path / "hevc.mp4", {"c:v": "libx265", "tag:v": "hvc1", "x265-params":
                                                       "log-level=error:keyint=15:min-keyint=15:bframes=0"}))
    ck = clip_place(runtime, with_sound)
    name = day_page(ck.device_id, ck.day)
    wait_for(lambda: all(k in (runtime.site.get(name) or "") for k in (with_sound, hevc)), what="both clips listed")
    record = runtime.services.index.get_clip(ck.device_id, ck.day, with_sound)
    assert record.audio_codec == "mp4a.40.2"
    assert runtime.services.index.get_clip(ck.device_id, ck.day, hevc).codec.startswith("hvc1.")

    context, page = login(browser, deployment.runtime_url)
    page.goto(f"{deployment.runtime_url}/{name}")

    page.click(f"li[data-key='{with_sound}'] a.play")
    page.wait_for_function("() => document.getElementById('video').currentTime > 1", timeout=30_000)
    decoded = page.evaluate("() => document.getElementById('video').webkitAudioDecodedByteCount")
    assert decoded > 0, "the clip's sound is decoded (the player starts muted; unmuting plays it)"
    assert page.is_hidden("#unplayable")

    page.click(f"li[data-key='{hevc}'] a.play")
    hevc_ok = page.evaluate("() => MediaSource.isTypeSupported('video/mp4; codecs=\"' + "
                            f"document.querySelector(\"li[data-key='{hevc}']\").dataset.c + '\"')")
    if hevc_ok:       # a Chromium with an HEVC decoder plays it like any other clip
        page.wait_for_function("() => document.getElementById('video').currentTime > 1", timeout=30_000)
        assert page.is_hidden("#unplayable")
    else:
        message = page.inner_text("#unplayable")
        assert "H.265 (HEVC)" in message and "Download" in message and "Export" in message
        assert page.evaluate("() => !document.getElementById('video').getAttribute('src')")
        assert page.get_attribute("#download", "href").endswith("&download=1")
    context.close()
