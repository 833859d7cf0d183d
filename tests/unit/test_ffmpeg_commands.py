"""Every ffmpeg command line is built with ffmpeg-python; these pin each one to the list it replaced.

Each expected list below is the hand-built argument list the code produced before ffmpeg-python built it,
copied from that code. They are compared as ffmpeg reads them (:func:`parsed`): global options wherever they
stand, each input's and output's options as a set (ffmpeg applies a file's options whatever their order),
``-map`` in order (it orders the output's streams), inputs and outputs in order. ffmpeg-python sorts a file's
options and puts global options last, so a byte-for-byte comparison would only pin that library's habits.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import ffmpeg
import pytest

from cryospy.common.ffmpeg_tool import ffmpeg_command
from cryospy.edge_agent.encoder import EncodeSettings
from cryospy.functions.clips.thumbnail import still_graph

EXE = "/opt/ffmpeg"
#: Options that take no value, and the global ones (ffmpeg accepts those anywhere on the line).
_FLAGS = {"-hide_banner", "-nostats", "-nostdin", "-y", "-an", "-vn", "-sn", "-dn"}
_GLOBAL = {"-hide_banner", "-nostats", "-nostdin", "-y", "-loglevel", "-v", "-filter_complex"}


@dataclass
class Parsed:
    binary: str
    globals: dict[str, str | None] = field(default_factory=dict)
    files: list[tuple[str, str, dict[str, str | None], list[str]]] = field(default_factory=list)


def parsed(command: list[str]) -> Parsed:
    """``command`` as ffmpeg groups it: global options, then (kind, url, options, maps) per input and output."""
    out = Parsed(command[0])
    options: dict[str, str | None] = {}
    maps: list[str] = []
    args = iter(command[1:])
    for arg in args:
        if arg.startswith("-") and arg != "-":
            value = None if arg in _FLAGS else next(args)
            if arg == "-i":
                out.files.append(("input", str(value), options, maps))
                options, maps = {}, []
            elif arg == "-map":
                maps.append(str(value))
            else:
                target = out.globals if arg in _GLOBAL else options
                assert arg not in target, f"{arg} given twice: which one ffmpeg keeps depends on order"
                target[arg] = value
        else:
            out.files.append(("output", arg, options, maps))
            options, maps = {}, []
    assert not options and not maps, f"options after the last output are ignored by ffmpeg: {options} {maps}"
    return out


def test_the_comparison_sees_real_differences() -> None:
    base = [EXE, "-y", "-f", "rawvideo", "-i", "pipe:0", "-c:v", "libx264", "-g", "10", "out.mp4"]
    assert parsed(base) == parsed([EXE, "-f", "rawvideo", "-i", "pipe:0", "-g", "10", "-c:v", "libx264",
                                   "out.mp4", "-y"])
    for changed in ([EXE, "-y", "-i", "pipe:0", "-f", "rawvideo", "-c:v", "libx264", "-g", "10", "out.mp4"],
                    [EXE, "-y", "-f", "rawvideo", "-i", "pipe:0", "-c:v", "libx264", "-g", "12", "out.mp4"],
                    [EXE, "-f", "rawvideo", "-i", "pipe:0", "-c:v", "libx264", "-g", "10", "out.mp4"]):
        assert parsed(changed) != parsed(base)
    assert parsed([EXE, "-i", "a", "-map", "0:v", "-map", "0:a", "o"]) != \
        parsed([EXE, "-i", "a", "-map", "0:a", "-map", "0:v", "o"])


# -- edge_agent/encoder.py ----------------------------------------------------------------------------------
def _old_encoder_args(s: EncodeSettings, output: Path, rate: str) -> list[str]:
    """``EncodeSettings.ffmpeg_args`` and the prefix ``ClipEncoder`` put before it, as they were."""
    gop = str(s.gop_frames)
    args = [EXE, "-hide_banner", "-nostats", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "gray" if s.grayscale else "bgr24", "-s", f"{s.width}x{s.height}",
            "-framerate", rate, "-i", "pipe:0", "-an"]
    if s.codec == "libopenh264":
        return [*args, "-c:v", "libopenh264", "-profile:v", "constrained_baseline", "-pix_fmt", "yuv420p",
                "-g", gop, "-b:v", str(s.bitrate), "-maxrate", str(s.bitrate), "-allow_skip_frames", "0",
                "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
                "-f", "mp4", "-y", str(output)]
    args += ["-c:v", "libx264", "-preset", s.preset, "-profile:v", "main", "-bf", "0", "-pix_fmt", "yuv420p",
             "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-x264-params", "rc-lookahead=3:sync-lookahead=0"]
    return args


@pytest.mark.parametrize(("settings", "rate", "rate_control"), [
    (EncodeSettings(width=640, height=360, fps=15), "15/1", ["-crf", "23"]),
    (EncodeSettings(width=160, height=96, fps=29.97, crf=28, bitrate="500k", grayscale=True, preset="slow",
                    keyframe_seconds=2), "2997/100",
     ["-crf", "28", "-maxrate", "500k", "-bufsize", "1000k"]),
    (EncodeSettings(width=1920, height=1080, fps=25, crf=None, bitrate="1.5M"), "25/1",
     ["-b:v", "1.5M", "-maxrate", "1.5M", "-bufsize", "3M"]),
    (EncodeSettings(width=320, height=240, fps=10, bitrate="800k", codec="libopenh264"), "10/1", []),
])
def test_encoder_command_is_the_hand_built_one(settings: EncodeSettings, rate: str, rate_control: list[str],
                                               tmp_path: Path) -> None:
    out = tmp_path / "clip-000001.mp4"
    old = _old_encoder_args(settings, out, rate)
    if settings.codec == "libx264":
        old += [*rate_control, "-movflags", "+frag_keyframe+empty_moov+default_base_moof+skip_trailer",
                "-flush_packets", "1", "-f", "mp4", "-y", str(out)]
    assert parsed(settings.command(out, exe=EXE)) == parsed(old)


# -- cryospy/common/ffmpeg_tool.py and functions/thumbnail.py ----------------------------------------------
def _old_thumbnail(at: str, path: str, box: tuple[int, int], q: str, *, piped: bool) -> list[str]:
    prefix = [EXE, "-hide_banner", "-nostats"] + ([] if piped else ["-nostdin"])
    scale = (f"scale=w=min(iw\\,{box[0]}):h=min(ih\\,{box[1]})"
             ":force_original_aspect_ratio=decrease:force_divisible_by=2:out_range=full,format=yuvj420p")
    return [*prefix, "-loglevel", "error", "-ss", at, "-i", path, "-map", "0:v:0", "-frames:v", "1", "-vf", scale,
            "-q:v", q, "-f", "image2pipe", "-vcodec", "mjpeg", "pipe:1"]


@pytest.mark.parametrize(("quality", "q"), [(80, "8"), (1, "31"), (100, "2")])
def test_thumbnail_command_is_the_hand_built_one(quality: int, q: str) -> None:
    graph = still_graph(ffmpeg.input("/clips/a b.mp4", ss="1.250"), 480, 360, quality)
    assert parsed(ffmpeg_command(graph, exe=EXE)) == parsed(_old_thumbnail("1.250", "/clips/a b.mp4", (480, 360), q,
                                                                            piped=False))


def test_piped_input_keeps_stdin_open_and_a_plain_list_is_passed_through() -> None:
    graph = still_graph(ffmpeg.input("pipe:0", ss="0.000"), 64, 48, 80)
    assert parsed(ffmpeg_command(graph, piped_stdin=True, exe=EXE)) == parsed(
        _old_thumbnail("0.000", "pipe:0", (64, 48), "8", piped=True))
    assert ffmpeg_command(["-encoders"], exe=EXE) == [EXE, "-hide_banner", "-nostats", "-nostdin", "-encoders"]


# -- bench/bench_cameras.py ---------------------------------------------------------------------------------
def test_bench_copy_baseline_is_the_hand_built_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "bench"))
    bench = importlib.import_module("bench_cameras")
    monkeypatch.setattr(bench, "ffmpeg_exe", lambda: EXE)
    url = "rtsp://user:pw@127.0.0.1:8554/main"
    old = [EXE, "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
           "-map", "0:v:0", "-c", "copy", "-f", "segment", "-segment_time", "10",
           "-segment_format", "mp4", "-segment_format_options",
           "movflags=+frag_keyframe+empty_moov+default_base_moof", "-reset_timestamps", "1",
           str(tmp_path / "seg-%06d.mp4")]
    assert parsed(bench.copy_baseline_command(url, tmp_path)) == parsed(old)
    sys.modules.pop("bench_cameras", None)
