"""Functional tests (real ffmpeg, real OpenCV) for the ffmpeg locator, the clip encoder and the fake camera.

Clips are tiny (160x96, a few seconds at 15 fps) so that the whole file runs in a few seconds on a
shared two-core machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import ffmpeg
import numpy as np
import pytest

from cryospy.common import ffmpeg_tool
from cryospy.common.ffmpeg_tool import FfmpegError, ffmpeg_exe, run_ffmpeg
from cryospy.edge_agent.encoder import ClipEncoder, EncodedClip, EncodeSettings
from cryospy.edge_agent.synthetic import SyntheticScene, make_sample_video
from cryospy.functions.clips.mp4 import parse_mp4_file

W, H, FPS = 160, 96, 15.0


def _decode_all(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from ``path`` (an independent decoder, not our parser)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"OpenCV cannot open {path}"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _encode(path: Path, scene: SyntheticScene, n: int, **settings: object) -> EncodedClip:
    with ClipEncoder(path, EncodeSettings(width=scene.width, height=scene.height, fps=scene.fps, **settings)) as enc:
        for i in range(n):
            enc.write(scene.frame(i))
    assert enc.result is not None
    return enc.result


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(width=W, height=H, fps=FPS, seed=7)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, scene: SyntheticScene) -> EncodedClip:
    return _encode(tmp_path_factory.mktemp("enc") / "clip.mp4", scene, 45)


# ------------------------------------------------------------------------------------------ ffmpeg


def test_ffmpeg_exe_finds_a_working_binary() -> None:
    exe = ffmpeg_exe()
    assert os.access(exe, os.X_OK)
    # A plain list: a command with no input or output is the one kind ffmpeg-python cannot build.
    assert b"libx264" in run_ffmpeg(["-encoders"], what="listing encoders")


def test_ffmpeg_exe_env_override_that_does_not_exist_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ffmpeg_tool.ENV_VAR, "/nonexistent/ffmpeg")
    ffmpeg_exe.cache_clear()
    try:
        with pytest.raises(FfmpegError, match="CRYOSPY_FFMPEG"):
            ffmpeg_exe()
    finally:
        monkeypatch.delenv(ffmpeg_tool.ENV_VAR)
        ffmpeg_exe.cache_clear()


def test_ffmpeg_exe_env_override_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ffmpeg_exe()
    monkeypatch.setenv(ffmpeg_tool.ENV_VAR, real)
    ffmpeg_exe.cache_clear()
    try:
        assert ffmpeg_exe() == str(Path(real).resolve())
    finally:
        monkeypatch.delenv(ffmpeg_tool.ENV_VAR)
        ffmpeg_exe.cache_clear()


def test_run_ffmpeg_failure_carries_stderr_tail(tmp_path: Path) -> None:
    with pytest.raises(FfmpegError) as info:
        run_ffmpeg(ffmpeg.input(str(tmp_path / "missing.mp4")).output("-", f="null"), what="probe of a missing file")
    assert "probe of a missing file" in str(info.value)
    assert "No such file" in info.value.stderr
    assert info.value.returncode not in (None, 0)


# -------------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 161}, "even"),
        ({"height": 8}, "between 16 and 8192"),
        ({"fps": 0}, "fps"),
        ({"crf": None}, "crf .* or bitrate"),
        ({"crf": 60}, "0 .* 51"),
        ({"bitrate": "fast"}, "1500k"),
        ({"keyframe_seconds": 0}, "keyframe_seconds"),
        ({"preset": "warp"}, "veryfast"),
    ],
)
def test_settings_reject_what_cannot_work(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"width": W, "height": H, "fps": FPS}
    with pytest.raises(ValueError, match=message):
        EncodeSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def test_ffmpeg_args_ask_for_browser_playable_fragmented_mp4(tmp_path: Path) -> None:
    args = EncodeSettings(width=W, height=H, fps=15, keyframe_seconds=2).command(tmp_path / "o.mp4")
    joined = " ".join(args)
    assert "-movflags +frag_keyframe+empty_moov+default_base_moof+skip_trailer" in joined
    assert "-g 30 -keyint_min 30" in joined and "-sc_threshold 0" in joined
    assert "-pix_fmt yuv420p" in joined and "-c:v libx264" in joined and "-an" in args
    assert "-i pipe:0" in joined


def test_capped_crf_and_plain_bitrate_args() -> None:
    capped = EncodeSettings(width=W, height=H, fps=FPS, crf=28, bitrate="500k").command(Path("x.mp4"))
    given = {k: capped[capped.index(k) + 1] for k in ("-crf", "-maxrate", "-bufsize")}
    assert given == {"-crf": "28", "-maxrate": "500k", "-bufsize": "1000k"}
    abr = EncodeSettings(width=W, height=H, fps=FPS, crf=None, bitrate="1.5M").command(Path("x.mp4"))
    assert "-crf" not in abr and abr[abr.index("-b:v") + 1] == "1.5M" and "3M" in abr


# --------------------------------------------------------------------------------------- encoding


def test_clip_has_expected_frames_and_duration(clip: EncodedClip, scene: SyntheticScene) -> None:
    assert clip.frames == 45 and clip.duration_s == pytest.approx(3.0)
    decoded = _decode_all(clip.path)
    assert len(decoded) == 45
    assert decoded[0].shape == (H, W, 3)
    # It really is the scene (lossy, but close), frame for frame.
    for i in (0, 22, 44):
        assert _psnr(decoded[i], scene.frame(i)) > 28
    info = parse_mp4_file(clip.path)
    assert info.duration_s == pytest.approx(3.0)
    assert (info.width, info.height, info.fps) == (W, H, 15.0)
    assert info.codec.startswith("avc1.4d")  # main profile


def test_one_fragment_per_keyframe_interval(clip: EncodedClip) -> None:
    info = parse_mp4_file(clip.path)
    assert len(info.fragments) >= 3
    assert all(f.keyframe for f in info.fragments)
    assert all(f.duration_s == pytest.approx(1.0) for f in info.fragments)


def test_shorter_keyframe_interval_gives_more_fragments(tmp_path: Path) -> None:
    # 10 fps so that 0.5 s is a whole number of frames (at 15 fps it would round to 8 frames).
    scene = SyntheticScene(width=W, height=H, fps=10, seed=2)
    out = _encode(tmp_path / "half.mp4", scene, 20, keyframe_seconds=0.5)
    info = parse_mp4_file(out.path)
    assert len(info.fragments) >= 2.0 / 0.5
    assert [round(f.start_s, 3) for f in info.fragments] == [0.0, 0.5, 1.0, 1.5]


def test_bitrate_mode_and_fractional_fps(tmp_path: Path) -> None:
    scene = SyntheticScene(width=W, height=H, fps=29.97, seed=1)
    out = _encode(tmp_path / "abr.mp4", scene, 30, crf=None, bitrate="200k")
    assert len(_decode_all(out.path)) == 30
    info = parse_mp4_file(out.path)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration_s == pytest.approx(30 / 29.97, abs=0.002)


def test_libopenh264_is_the_encoder_the_setting_names(tmp_path: Path) -> None:
    """output_codec: libopenh264 really encodes with Cisco's encoder (constrained baseline, profile 66),
    at the bitrate target, into the same fragment layout; libx264 gives main profile (77)."""
    scene = SyntheticScene(width=W, height=H, fps=10, seed=3)
    openh264 = _encode(tmp_path / "oh.mp4", scene, 20, crf=None, bitrate="300k", codec="libopenh264")
    x264 = _encode(tmp_path / "x.mp4", scene, 20)
    assert parse_mp4_file(openh264.path).codec.startswith("avc1.42")
    assert parse_mp4_file(x264.path).codec.startswith("avc1.4d")
    assert len(_decode_all(openh264.path)) == 20 and len(parse_mp4_file(openh264.path).fragments) == 2
    with pytest.raises(ValueError, match="no constant-quality mode"):
        EncodeSettings(width=W, height=H, fps=10, codec="libopenh264", bitrate=None)


def test_grayscale_has_no_chroma(tmp_path: Path, scene: SyntheticScene) -> None:
    out = _encode(tmp_path / "grey.mp4", scene, 5, grayscale=True)
    frame = _decode_all(out.path)[2]
    spread = frame.astype(np.int16).max(axis=2) - frame.astype(np.int16).min(axis=2)
    assert float(spread.mean()) < 2.0


def test_wrong_size_and_grey_frames_are_adapted(tmp_path: Path, scene: SyntheticScene) -> None:
    big = cv2.resize(scene.frame(0), (W * 2, H * 2))
    grey = cv2.cvtColor(scene.frame(1), cv2.COLOR_BGR2GRAY)
    with ClipEncoder(tmp_path / "mixed.mp4", EncodeSettings(width=W, height=H, fps=FPS)) as enc:
        enc.write(big)
        enc.write(grey)
        with pytest.raises(ValueError, match="uint8"):
            enc.write(scene.frame(2).astype(np.float32))
        with pytest.raises(ValueError, match="shape"):
            enc.write(np.zeros((H, W, 4), np.uint8))
    decoded = _decode_all(tmp_path / "mixed.mp4")
    assert len(decoded) == 2 and decoded[0].shape == (H, W, 3)
    assert _psnr(decoded[0], scene.frame(0)) > 25


def test_exception_inside_context_removes_partial_file(tmp_path: Path, scene: SyntheticScene) -> None:
    target = tmp_path / "partial.mp4"
    with pytest.raises(RuntimeError, match="camera lost"), ClipEncoder(
        target, EncodeSettings(width=W, height=H, fps=FPS)
    ) as enc:
        enc.write(scene.frame(0))
        raise RuntimeError("camera lost")
    assert not target.exists()


def test_abort_and_empty_close(tmp_path: Path, scene: SyntheticScene) -> None:
    settings = EncodeSettings(width=W, height=H, fps=FPS)
    enc = ClipEncoder(tmp_path / "aborted.mp4", settings)
    enc.write(scene.frame(0))
    enc.abort()
    enc.abort()
    assert not (tmp_path / "aborted.mp4").exists()
    empty = ClipEncoder(tmp_path / "empty.mp4", settings)
    with pytest.raises(FfmpegError, match="no frames"):
        empty.close()
    assert not (tmp_path / "empty.mp4").exists()


def test_close_is_idempotent_and_write_after_close_fails(clip: EncodedClip, tmp_path: Path) -> None:
    enc = ClipEncoder(tmp_path / "one.mp4", EncodeSettings(width=W, height=H, fps=FPS))
    enc.write(np.zeros((H, W, 3), np.uint8))
    first = enc.close()
    assert enc.close() is first and first.frames == 1
    with pytest.raises(RuntimeError, match="already closed"):
        enc.write(np.zeros((H, W, 3), np.uint8))


def test_unwritable_output_raises_ffmpeg_error(tmp_path: Path, scene: SyntheticScene) -> None:
    target = tmp_path / "no" / "such" / "dir" / "clip.mp4"
    with (
        pytest.raises(FfmpegError, match=r"(?s)clip\.mp4.*ffmpeg said"),
        ClipEncoder(target, EncodeSettings(width=W, height=H, fps=FPS)) as enc,
    ):
        for i in range(30):
            enc.write(scene.frame(i))
    assert not target.exists()


def test_missing_binary_raises_ffmpeg_error(tmp_path: Path) -> None:
    with pytest.raises(FfmpegError, match="could not start ffmpeg"):
        ClipEncoder(tmp_path / "x.mp4", EncodeSettings(width=W, height=H, fps=FPS), ffmpeg=str(tmp_path / "nope"))


# -------------------------------------------------------------------------------------- synthetic


def test_scene_is_deterministic_and_random_access(scene: SyntheticScene) -> None:
    again = SyntheticScene(width=W, height=H, fps=FPS, seed=7)
    assert np.array_equal(scene.frame(30), again.frame(30))
    assert not np.array_equal(scene.frame(30), SyntheticScene(width=W, height=H, fps=FPS, seed=8).frame(30))
    frame = scene.frame(3)
    assert frame.dtype == np.uint8 and frame.shape == (H, W, 3)
    assert float(scene.background.std()) > 15  # textured, not flat


def test_moving_object_moves(scene: SyntheticScene) -> None:
    # Frames 16 and 29 fall within the same clock second, so only the object differs.
    a, b = scene.frame(16), scene.frame(29)
    changed = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2) > 40
    box_a, box_b = scene.object_box(16), scene.object_box(29)
    assert box_a is not None and box_b is not None and box_a[0] < box_b[0]
    assert changed.mean() > 0.03
    # The change is where the object was and went, not everywhere.
    _, xs = np.nonzero(changed)
    assert xs.min() >= box_a[0] - 3 and xs.max() <= box_b[0] + box_b[2] + 3


def test_static_noisy_scene_differs_only_a_little() -> None:
    still = SyntheticScene(width=W, height=H, fps=FPS, seed=3, moving=False, noise_sigma=3.0, timestamp=False)
    a, b = still.frame(0), still.frame(1)
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    assert 0 < float(diff.mean()) < 6
    assert float(np.percentile(diff, 99.9)) < 25
    noiseless = SyntheticScene(width=W, height=H, fps=FPS, seed=3, moving=False, noise_sigma=0, timestamp=False)
    assert np.array_equal(noiseless.frame(0), noiseless.frame(40))


def test_brightness_jump_and_clock() -> None:
    lit = SyntheticScene(width=W, height=H, fps=FPS, moving=False, noise_sigma=0, brightness_change_at=1.0)
    before, after = lit.frame(14).astype(np.int16), lit.frame(15).astype(np.int16)
    assert float((after - before).mean()) > 30
    # The clock overlay ticks once per second and nothing else changes in a noiseless still scene.
    clock = SyntheticScene(width=W, height=H, fps=FPS, moving=False, noise_sigma=0)
    assert not np.array_equal(clock.frame(14), clock.frame(15))
    assert np.array_equal(clock.frame(15), clock.frame(16))


def test_make_sample_video(tmp_path: Path) -> None:
    path = make_sample_video(tmp_path / "sample.mp4", seconds=2, width=W, height=H, fps=10)
    info = parse_mp4_file(path)
    assert info.duration_s == pytest.approx(2.0) and (info.width, info.height) == (W, H)
    assert len(info.fragments) == 2 and all(f.keyframe for f in info.fragments)
    assert len(_decode_all(path)) == 20
