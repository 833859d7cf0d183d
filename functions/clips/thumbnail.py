"""One JPEG still from a clip, for the dashboard's clip list.

Ingest takes it from one decrypted fragment in memory, decoded in-process with PyAV
(:func:`thumbnail_from_fragment`). A clip file on disk (tools, tests) goes through the ffmpeg binary:

ffmpeg does the work in a single pass with no output file: ``-ss`` before ``-i`` seeks to the keyframe
before the wanted time (fast; fragments are short so it is close) and decodes forward to it, the scale
filter fits the frame inside the box without upscaling, and the JPEG comes back on stdout. Nothing
plaintext is written to disk, which matters because the caller seals the result.

The wanted time is clamped into the clip, using the duration read by :mod:`cryospy.functions.clips.mp4`:
ffmpeg exits 0 and prints nothing when asked for a frame past the end, which would otherwise look
like a mysterious empty thumbnail. Every failure is a :class:`~cryospy.common.ffmpeg_tool.FfmpegError`.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import cv2
import ffmpeg as ffmpeg_python  # the package; ``ffmpeg`` is the binary parameter below

from cryospy.common.ffmpeg_tool import FfmpegError, run_ffmpeg
from cryospy.functions.clips.mp4 import Mp4Error, parse_mp4_file

__all__ = ["make_thumbnail", "thumbnail_from_fragment"]

_JPEG_START = b"\xff\xd8"
_TIMEOUT_S = 60.0


def make_thumbnail(
    video_path: Path,
    *,
    at_seconds: float,
    max_width: int = 480,
    max_height: int = 360,
    quality: int = 80,
    ffmpeg: str | None = None,
) -> bytes:
    """Return JPEG bytes of the frame at ``at_seconds``, aspect kept, inside ``max_width``x``max_height``.

    ``quality`` is 1 (smallest) to 100 (best), mapped onto ffmpeg's mjpeg ``-q:v`` 31..2. Dimensions
    are even; a clip smaller than the box is not enlarged.
    """
    video_path = Path(video_path)
    _check_box(max_width, max_height, quality)
    if not video_path.is_file():
        raise FfmpegError(f"cannot make a thumbnail: {video_path} does not exist or is not a file")
    try:
        info = parse_mp4_file(video_path)
    except Mp4Error as exc:
        raise FfmpegError(f"cannot make a thumbnail of {video_path}: it is not a playable MP4 ({exc})") from exc

    # Stay one frame short of the end: a seek to the exact duration lands after the last frame.
    frame_s = 1.0 / info.fps if info.fps else 0.1
    at = min(max(0.0, at_seconds), max(0.0, info.duration_s - frame_s))
    return _encode_still(ffmpeg_python.input(str(video_path), ss=f"{at:.3f}"), max_width, max_height, quality,
                         f"thumbnail of {video_path} at {at:.3f}s", ffmpeg)


def thumbnail_from_fragment(init: bytes, fragment: bytes, *, offset_s: float, max_width: int = 480,
                            max_height: int = 360, quality: int = 80) -> bytes:
    """A JPEG from one fMP4 fragment (plus the init segment), decoded in this process: no plaintext on disk.

    ``offset_s`` is the wanted time relative to the fragment's start; fragments begin with a keyframe, so at
    most one fragment's frames are decoded to reach it. This is ingest's per-clip step, so it uses FFmpeg's
    libraries through PyAV instead of an ffmpeg process: starting ffmpeg was most of a clip's ingest time.
    """
    _check_box(max_width, max_height, quality)
    if not init or not fragment:
        raise FfmpegError("cannot make a thumbnail from an empty init segment or fragment")
    frame = _frame_at(init + fragment, max(0.0, offset_s))
    scale = min(1.0, max_width / frame.width, max_height / frame.height)
    width, height = max(2, int(frame.width * scale) // 2 * 2), max(2, int(frame.height * scale) // 2 * 2)
    image = frame.to_ndarray(format="bgr24", width=width, height=height, interpolation="AREA")
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, _jpeg_quality(quality)])
    if not ok:
        raise FfmpegError(f"could not encode a {width}x{height} JPEG for the thumbnail")
    return jpeg.tobytes()


def _frame_at(data: bytes, offset_s: float) -> av.VideoFrame:
    """The first frame at or after ``offset_s`` from the first frame, else the last one."""
    try:
        # Small probe: the init segment already says everything; probing would decode frames twice.
        with av.open(io.BytesIO(data), format="mp4", options={"probesize": "32", "analyzeduration": "0"}) as box:
            if not box.streams.video:
                raise FfmpegError("the clip has no video track to take a thumbnail from")
            frame, first = None, None
            for frame in box.decode(box.streams.video[0]):
                at = float(frame.pts * frame.time_base) if frame.pts is not None else 0.0
                first = at if first is None else first
                if at - first >= offset_s - 1e-3:
                    break
    except av.FFmpegError as exc:
        raise FfmpegError(f"the fragment could not be decoded for a thumbnail ({exc})") from exc
    if frame is None:
        raise FfmpegError("the fragment holds no decodable frame for a thumbnail; check the clip plays, e.g. "
                          "`ffmpeg -v error -i FILE -f null -`")
    return frame


def _jpeg_quality(quality: int) -> int:
    """``quality`` 1..100 as libjpeg's scale, close in size to what ffmpeg's mjpeg ``-q:v`` gives (60 at 80)."""
    return max(1, min(100, round(quality * 0.75)))


def _check_box(max_width: int, max_height: int, quality: int) -> None:
    if max_width < 2 or max_height < 2:
        raise ValueError(f"thumbnail box {max_width}x{max_height} is too small; use at least 2x2")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality={quality!r}: use 1 (smallest) to 100 (best); 80 is a good default")


def still_graph(source: ffmpeg_python.nodes.FilterableStream, max_width: int, max_height: int,
                quality: int) -> ffmpeg_python.nodes.OutputStream:
    """The ffmpeg job that writes one JPEG of ``source``'s first video frame to stdout."""
    q = round(31 - (quality - 1) * 29 / 99)
    scale = (
        f"scale=w=min(iw\\,{max_width}):h=min(ih\\,{max_height})"
        ":force_original_aspect_ratio=decrease:force_divisible_by=2:out_range=full,format=yuvj420p"
    )
    # ``vf=`` rather than ``.filter()``: ffmpeg-python turns filters into ``-filter_complex``; this keeps the
    # simple ``-vf`` chain the thumbnail has always had.
    return ffmpeg_python.output(source["v:0"], "pipe:1", vf=scale, f="image2pipe", vcodec="mjpeg",
                                **{"frames:v": 1, "q:v": q}).global_args("-loglevel", "error")


def _encode_still(source: ffmpeg_python.nodes.FilterableStream, max_width: int, max_height: int, quality: int,
                  what: str, ffmpeg: str | None) -> bytes:
    _check_box(max_width, max_height, quality)
    jpeg = run_ffmpeg(still_graph(source, max_width, max_height, quality), what=what, timeout=_TIMEOUT_S,
                      exe=ffmpeg)
    if not jpeg.startswith(_JPEG_START):
        raise FfmpegError(
            f"ffmpeg produced no image for the {what} (the clip may hold no decodable frame there); "
            "check the file plays, e.g. `ffmpeg -v error -i FILE -f null -`"
        )
    return jpeg
