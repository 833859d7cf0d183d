"""Encode camera frames into browser-playable fragmented MP4 through an ffmpeg pipe.

Why this exact format: the server never transcodes. Its HLS handler only parses box offsets
(:mod:`cryospy.functions.clips.mp4`) and writes byte-range playlists, so the file the agent produces *is* the
stream the browser plays. That pins down every choice below:

* H.264 (libx264), ``yuv420p``, main profile, no B-frames: decodable by every browser's MSE; without
  B-frames decode time equals presentation time, so a fragment's ``tfdt`` is exactly where it plays.
* a keyframe every ``keyframe_seconds`` (``-g`` = ``-keyint_min``, scene-cut off) and one fragment per
  keyframe (``frag_keyframe``): every fragment is an independently decodable HLS segment.
* ``empty_moov`` + ``default_base_moof``: the init segment (ftyp+moov) holds no samples, so it is the
  ``EXT-X-MAP`` range, and each moof addresses its own mdat as MSE requires.
* ``skip_trailer``: no ``mfra`` index at the end, so init + fragments tile the file exactly.

Frames go to ffmpeg's stdin as raw BGR24 (or GRAY8); no raw intermediate file ever touches the disk.
Errors are :class:`~cryospy.common.ffmpeg_tool.FfmpegError` (ffmpeg failed or was fed nothing) or
``ValueError`` for settings or frames that can never work.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import cv2
import ffmpeg
import numpy as np

from cryospy.common.ffmpeg_tool import FfmpegError, drain_into, ffmpeg_exe

from .recorded import EncodedClip, StreamInfo

__all__ = ["ClipEncoder", "EncodeSettings", "EncodedClip"]

_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
)
_CODECS = ("libx264", "libopenh264")
_BITRATE = re.compile(r"^[1-9][0-9]*(\.[0-9]+)?[kKmM]?$")
_STDERR_KEEP = 64 * 1024
_CLOSE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class EncodeSettings:
    """How to encode one clip.

    Rate control: ``crf`` alone is constant quality; ``bitrate`` alone (``crf=None``) is average
    bitrate; both together is *capped* CRF (quality target that never exceeds ``bitrate``), which suits
    an uplink with a hard ceiling.
    """

    width: int
    height: int
    fps: float
    crf: int | None = 23
    bitrate: str | None = None
    grayscale: bool = False
    keyframe_seconds: float = 1.0
    preset: str = "veryfast"
    codec: str = "libx264"          # or libopenh264 (Cisco's encoder: no CRF, the bitrate is its target)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 16 or value > 8192:
                raise ValueError(f"{name}={value!r}: must be an integer between 16 and 8192 pixels")
            if value % 2:
                raise ValueError(
                    f"{name}={value}: H.264 yuv420p needs even dimensions; use {value - 1} or {value + 1}"
                )
        if not 0 < self.fps <= 240:
            raise ValueError(f"fps={self.fps!r}: must be above 0 and at most 240")
        if self.crf is None and self.bitrate is None:
            raise ValueError("set crf (constant quality, e.g. 23) or bitrate (e.g. '1500k'), or both")
        if self.crf is not None and not 0 <= self.crf <= 51:
            raise ValueError(f"crf={self.crf!r}: x264 accepts 0 (lossless) to 51 (worst); 18-28 is typical")
        if self.bitrate is not None and not _BITRATE.match(self.bitrate):
            raise ValueError(f"bitrate={self.bitrate!r}: use a number with an optional k/M suffix, e.g. '1500k'")
        if not 0.1 <= self.keyframe_seconds <= 10:
            raise ValueError(
                f"keyframe_seconds={self.keyframe_seconds!r}: must be between 0.1 and 10; it is also the "
                "HLS segment length"
            )
        if self.codec not in _CODECS:
            raise ValueError(f"codec={self.codec!r}: choose one of {', '.join(_CODECS)}")
        if self.codec == "libopenh264" and self.bitrate is None:
            raise ValueError("libopenh264 has no constant-quality mode: set bitrate (e.g. '1500k')")
        if self.preset not in _PRESETS:
            raise ValueError(f"preset={self.preset!r}: choose one of {', '.join(_PRESETS)}")

    @property
    def gop_frames(self) -> int:
        """Frames between keyframes (and therefore per fragment)."""
        return max(1, round(self.keyframe_seconds * self.fps))

    def graph(self, output: Path) -> ffmpeg.nodes.OutputStream:
        """The ffmpeg job, as an ffmpeg-python graph: raw frames on stdin in, ``output`` out."""
        rate = Fraction(self.fps).limit_denominator(1001)
        gop = str(self.gop_frames)
        frames = ffmpeg.input("pipe:0", f="rawvideo", pix_fmt="gray" if self.grayscale else "bgr24",
                              s=f"{self.width}x{self.height}", framerate=f"{rate.numerator}/{rate.denominator}")
        options: dict[str, object] = {"an": None}
        if self.codec == "libopenh264":
            # Constrained baseline: no B-frames by definition, plays everywhere; a keyframe every GOP and no
            # frame skipping, so fragments tile the clip as with x264.
            assert self.bitrate is not None
            options |= {"c:v": "libopenh264", "profile:v": "constrained_baseline", "pix_fmt": "yuv420p",
                        "g": gop, "b:v": self.bitrate, "maxrate": self.bitrate, "allow_skip_frames": 0}
        else:
            options |= {
                "c:v": "libx264", "preset": self.preset, "profile:v": "main", "bf": 0, "pix_fmt": "yuv420p",
                "g": gop, "keyint_min": gop, "sc_threshold": 0,
                # A 3-frame lookahead (x264 veryfast uses 10, plus sync lookahead) lets a fragment reach the
                # file ~0.6 s after its last frame instead of ~2.4 s at 10 fps, which is what live view waits
                # for; mb-tree still runs, and the synthetic scene came out 5% smaller at the same CPU.
                "x264-params": "rc-lookahead=3:sync-lookahead=0",
                "flush_packets": 1,
            }
            if self.crf is not None:
                options["crf"] = self.crf
                if self.bitrate is not None:
                    options |= {"maxrate": self.bitrate, "bufsize": _double(self.bitrate)}
            else:
                assert self.bitrate is not None
                options |= {"b:v": self.bitrate, "maxrate": self.bitrate, "bufsize": _double(self.bitrate)}
        options["movflags"] = "+frag_keyframe+empty_moov+default_base_moof+skip_trailer"
        return ffmpeg.output(frames, str(output), f="mp4", **options)

    def command(self, output: Path, *, exe: str | None = None) -> list[str]:
        """The whole command line (binary first) that encodes raw frames from stdin into ``output``."""
        return self.graph(output).global_args("-hide_banner", "-nostats", "-loglevel", "error") \
            .compile(cmd=exe or ffmpeg_exe(), overwrite_output=True)


def _double(bitrate: str) -> str:
    """Twice a bitrate string, as the VBV buffer: one to two seconds of buffer is x264's usual advice."""
    suffix = bitrate[-1] if bitrate[-1] in "kKmM" else ""
    number = float(bitrate[: len(bitrate) - len(suffix)])
    return f"{number * 2:g}{suffix}"


class ClipEncoder:
    """Stream frames into one fragmented-MP4 file; ``close()`` finishes it, ``abort()`` discards it.

    Use as a context manager: leaving normally closes (the result is in :attr:`result`), leaving with an
    exception aborts and removes the partial file, so a crash never leaves a half-written clip behind.
    """

    def __init__(self, path: Path | str, settings: EncodeSettings, *, ffmpeg: str | None = None) -> None:
        self.path = Path(path)
        self.settings = settings
        self._frames = 0
        self._result: EncodedClip | None = None
        self._stderr = bytearray()
        self._channels = 1 if settings.grayscale else 3
        command = settings.command(self.path, exe=ffmpeg)
        # The output is plaintext video: create it 0600 before ffmpeg opens it (``-y`` truncates and keeps
        # the mode), so it is never readable by anyone else, whatever the umask. If that fails, ffmpeg fails
        # on the same path too, and its own diagnosis is the better error.
        with contextlib.suppress(OSError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        try:
            # Its own session: a Ctrl-C or a SIGTERM sent to the agent's process group must not kill the
            # encoder of the clip the agent is about to finish; ffmpeg ends when its stdin closes.
            self._proc = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self._remove_output()
            raise FfmpegError(f"could not start ffmpeg ({command[0]}) to encode {self.path}: {exc}") from exc
        # ffmpeg's stderr is drained on a thread: a full pipe would block ffmpeg, which would stop reading
        # stdin, which would block write() forever.
        self._drain = threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True)
        self._drain.start()

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._frames

    @property
    def result(self) -> EncodedClip | None:
        """The finished clip once :meth:`close` succeeded, else None."""
        return self._result

    def write(self, frame: np.ndarray) -> None:
        """Encode one frame (BGR ``HxWx3`` or grey ``HxW``, uint8); other sizes are resized to fit."""
        if self._result is not None or self._proc.stdin is None or self._proc.stdin.closed:
            raise RuntimeError(f"encoder for {self.path} is already closed; start a new ClipEncoder")
        data = self._prepare(frame)
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, ValueError) as exc:
            self._proc.wait(timeout=_CLOSE_TIMEOUT_S)
            self._drain.join(timeout=5)
            self._remove_output()
            raise FfmpegError(
                f"ffmpeg stopped accepting frames for {self.path} after {self._frames} frame(s)",
                stderr=bytes(self._stderr),
                returncode=self._proc.returncode,
            ) from exc
        self._frames += 1

    def close(self) -> EncodedClip:
        """Finish the file and return what was written; idempotent once it has succeeded."""
        if self._result is not None:
            return self._result
        if self._frames == 0:
            self.abort()
            raise FfmpegError(f"no frames were written to {self.path}; write at least one frame before close()")
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        try:
            returncode = self._proc.wait(timeout=_CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            self.abort()
            raise FfmpegError(
                f"ffmpeg did not finish {self.path} within {_CLOSE_TIMEOUT_S:g}s; the machine may be "
                "overloaded, try a faster preset or a lower resolution",
                stderr=bytes(self._stderr),
            ) from exc
        self._drain.join(timeout=5)
        if returncode != 0:
            self._remove_output()
            raise FfmpegError(
                f"ffmpeg failed (exit {returncode}) while encoding {self.path}",
                stderr=bytes(self._stderr),
                returncode=returncode,
            )
        s = self.settings
        self._result = EncodedClip(self.path, self._frames, self._frames / s.fps,
                                   StreamInfo("h264", s.width, s.height, s.fps))
        return self._result

    def abort(self) -> None:
        """Stop ffmpeg and delete the partial output. Safe to call at any time, any number of times."""
        if self._result is not None:
            return
        if self._proc.stdin is not None and not self._proc.stdin.closed:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._drain.join(timeout=5)
        self._remove_output()

    def __enter__(self) -> ClipEncoder:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _prepare(self, frame: np.ndarray) -> bytes:
        """Validate and convert one frame to the raw bytes ffmpeg expects."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            kind = getattr(frame, "dtype", type(frame).__name__)
            raise ValueError(f"frame must be a uint8 numpy array (as OpenCV returns), got {kind}")
        if frame.ndim == 2:
            if not self.settings.grayscale:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
        elif frame.ndim == 3 and frame.shape[2] == 3:
            if self.settings.grayscale:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        else:
            raise ValueError(f"frame shape {frame.shape} is neither BGR (H, W, 3) nor grey (H, W)")
        if frame.shape[0] != self.settings.height or frame.shape[1] != self.settings.width:
            frame = cv2.resize(frame, (self.settings.width, self.settings.height), interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(frame).tobytes()

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        drain_into(self._proc.stderr, self._stderr, _STDERR_KEEP)

    def _remove_output(self) -> None:
        self.path.unlink(missing_ok=True)
