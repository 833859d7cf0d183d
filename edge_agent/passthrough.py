"""Passthrough recording: store an IP camera's own H.264/H.265 packets in clips, without decoding them.

Why: decoding and re-encoding a 1080p camera costs most of a core and throws quality away; copying its
packets keeps every bit the camera sent, and the whole agent then needs about a fourteenth of that, motion,
sealing and upload included (bench/bench_cameras.py: 0.054 against 0.76 of a core at 1080p25).

One ffmpeg process per camera reads the stream (RTSP over TCP by default) and writes it with ``-c copy``
through ffmpeg's segment muxer, which cuts a new clip at the first keyframe after each
``clip_duration_seconds`` boundary, as fragmented MP4 with one fragment per keyframe (the layout the server's
byte-range HLS needs, as for encoded clips). The muxer reports each finished clip in a CSV list, which this
loop tails; each finished clip goes to the finisher, which seals, chains and spools it exactly as it does
encoded clips.

Motion (see :mod:`.motion_tap`): with a ``detect_device`` (the camera's low-resolution sub-stream) a second
ffmpeg decodes that stream at ``motion_detect_fps``; without one, the same ffmpeg that copies the main stream
also decodes its keyframes only (``-skip_frame nokey``: about one frame a second for a fraction of a full
decode) and pipes them out small and grey.

Cameras as they behave:

* a camera that drops mid-clip: ffmpeg ends the clip it was writing (it is sealed and uploaded like any
  other), the loop reconnects with exponential backoff, and the first clip after the outage carries a
  :class:`~.recorded.SourceGap` ("camera offline from ... to ...") in its sealed metadata;
* clip times come from the agent's clock (see :class:`SessionClock`), not from the camera's
  timestamps, so a camera whose clock jumps or runs backwards still yields clips placed where they were
  recorded; ffmpeg itself repairs non-monotonic timestamps inside a clip;
* credentials in the URL never leave ffmpeg's command line: every diagnostic is passed through
  :func:`.stream_url.redact`;
* audio is dropped unless ``record_audio`` is on; then it is encoded to AAC (small, and every browser plays
  it, whatever the camera sends: G.711, AAC, ...). Video is never re-encoded here.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import av
import ffmpeg

from cryospy.common.ffmpeg_tool import FfmpegError, drain_into, ffmpeg_exe
from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.settings import DeviceSettings
from cryospy.common.timefmt import utc_stamp

from .config import AgentConfig
from .motion_tap import MotionTap, PgmError, read_pgm_frames
from .recorded import EncodedClip, RecordedClip, SourceGap, StreamInfo
from .settings_sync import SettingsSnapshot
from .stream_url import redact, url_password

log = logging.getLogger(__name__)

#: Codecs a browser can be handed as they are (H.265 where the browser decodes HEVC; the player says when not).
PLAYABLE_CODECS = ("h264", "hevc")
_STDERR_KEEP = 16 * 1024
_POLL_S = 0.2
_STOP_WAIT_S = 10.0
_IO_TIMEOUT_US = 10_000_000          # a camera silent for 10 s is gone: ffmpeg gives up and we reconnect


@dataclass(frozen=True)
class PassthroughPlan:
    """What one recording session runs with; a change of :meth:`session_key` restarts ffmpeg."""

    settings: DeviceSettings
    etag: str
    recipient: DeploymentPublicKey
    clip_seconds: float
    audio: bool
    detect_fps: float
    detect_width: int

    @property
    def motion_only(self) -> bool:
        return self.settings.motion_only

    @property
    def mode(self) -> str:
        return "passthrough"

    def session_key(self) -> tuple[object, ...]:
        return (self.clip_seconds, self.audio, self.detect_fps, self.detect_width)

    @classmethod
    def build(cls, snapshot: SettingsSnapshot, config: AgentConfig) -> PassthroughPlan:
        s = snapshot.settings
        clip_seconds = float(config.clip_seconds or s.clip_duration_seconds)
        detect_fps = min(s.motion_detect_fps, max(0.2, s.motion_max_frames / clip_seconds))  # the per-clip cap
        return cls(s, snapshot.etag, snapshot.recipient, clip_seconds, s.record_audio, round(detect_fps, 3),
                   s.motion_detect_width)


def _input(url: str, transport: str, **extra: str) -> ffmpeg.nodes.FilterableStream:
    options: dict[str, str] = dict(extra)
    if url.lower().startswith(("rtsp://", "rtsps://")):
        options |= {"rtsp_transport": transport, "timeout": str(_IO_TIMEOUT_US)}
    else:
        options |= {"rw_timeout": str(_IO_TIMEOUT_US)}
    return ffmpeg.input(url, fflags="+genpts+discardcorrupt", **options)


def _grey_frames(stream: ffmpeg.nodes.FilterableStream, width: int) -> ffmpeg.nodes.OutputStream:
    small = stream.filter("scale", width, -2).filter("format", "gray")
    return ffmpeg.output(small, "pipe:1", f="image2pipe", vcodec="pgm", fps_mode="passthrough")


def recording_command(url: str, out_dir: Path, plan: PassthroughPlan, *, transport: str = "tcp",
                      motion_from_main: bool = True) -> list[str]:
    """ffmpeg's command line for one session: copy the main stream into clips (and, without a sub-stream,
    decode its keyframes for motion onto stdout)."""
    src = _input(url, transport, **({"skip_frame": "nokey"} if motion_from_main else {}))
    streams = [src["v:0"], src["a:0?"]] if plan.audio else [src["v:0"]]
    audio = {"acodec": "aac", "b:a": "64k"} if plan.audio else {}
    clips = ffmpeg.output(
        *streams, str(out_dir / "clip-%06d.mp4"), vcodec="copy", **audio,
        f="segment", segment_time=f"{plan.clip_seconds:g}", segment_format="mp4",
        # flush_packets=1: each fragment reaches the file when ffmpeg closes it, not when 32 KiB have
        # piled up, so live view (live_parts.py) can tail the clip being written.
        segment_format_options="movflags=+frag_keyframe+empty_moov+default_base_moof:flush_packets=1",
        reset_timestamps=1, segment_list=str(out_dir / "clips.csv"), segment_list_type="csv",
        max_muxing_queue_size=4096)
    outputs = [clips, _grey_frames(src["v:0"], plan.detect_width)] if motion_from_main else [clips]
    return ffmpeg.merge_outputs(*outputs).global_args("-hide_banner", "-nostdin", "-loglevel", "warning") \
        .compile(cmd=ffmpeg_exe())


def detect_command(url: str, plan: PassthroughPlan, *, transport: str = "tcp") -> list[str]:
    """ffmpeg's command line that decodes the sub-stream at the detect rate into small grey frames."""
    src = _input(url, transport)
    return _grey_frames(src["v:0"].filter("fps", f"{plan.detect_fps:g}"), plan.detect_width) \
        .global_args("-hide_banner", "-nostdin", "-loglevel", "warning").compile(cmd=ffmpeg_exe())


def probe_clip(path: Path) -> EncodedClip:
    """Describe a copied clip from its packets (demux only, no decoding): frames, duration, codecs, size."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise FfmpegError(f"{path.name} holds no video track")
            video = container.streams.video[0]
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            frames, first, last, step = 0, None, None, 0
            for packet in container.demux(video):
                if packet.size == 0 or packet.pts is None:
                    continue
                frames += 1
                first = packet.pts if first is None else min(first, packet.pts)
                if last is None or packet.pts >= last:
                    last, step = packet.pts, packet.duration or step
            ctx = video.codec_context
            width, height, codec = ctx.width, ctx.height, ctx.name
            base = float(video.time_base) if video.time_base else 0.0
    except av.error.FFmpegError as exc:
        raise FfmpegError(f"the copied clip {path.name} cannot be read: {exc}") from exc
    if frames == 0 or first is None or last is None:
        raise FfmpegError(f"the copied clip {path.name} holds no video frames")
    duration = (last - first + step) * base if base else 0.0
    if duration <= 0:
        duration = frames / 25.0
    fps = round(frames / duration, 3) if duration > 0 else 0.0
    return EncodedClip(path, frames, duration, StreamInfo(codec, width, height, fps, audio))


@dataclass
class CopiedClip:
    """A clip ffmpeg has finished writing; closing it means describing it."""

    path: Path
    _result: EncodedClip | None = field(default=None, repr=False)

    def close(self) -> EncodedClip:
        if self._result is None:
            try:
                self._result = probe_clip(self.path)
            except FfmpegError:
                self.abort()
                raise
        return self._result

    def abort(self) -> None:
        self.path.unlink(missing_ok=True)


_NO_VIDEO = "the stream has no video track; point camera_device at the camera's video stream"


def explain(stderr: str) -> str:
    """ffmpeg's diagnosis of a failed camera, in words a user can act on (already redacted)."""
    low = stderr.lower()
    rules = (
        ("401", "the camera refused the username or password (RTSP 401 Unauthorized); check the credentials in "
                "the camera URL"),
        ("403 forbidden", "the camera refused access (403 Forbidden); check the account's rights on the camera"),
        ("404 not found", "the camera has no stream at that path (404); check the URL's path"),
        ("connection refused", "connection refused: nothing listens at that address and port"),
        ("no route to host", "no route to the camera: it is off, unplugged or on another network"),
        ("timed out", "the camera stopped answering (timed out)"),
        ("matches no streams", _NO_VIDEO),
        # Our -skip_frame finds no video decoder to take it, and ffmpeg stops there before it reaches -map.
        ("avoption skip_frame", _NO_VIDEO),
        ("name or service not known", "the camera's host name does not resolve"),
        ("invalid data found", "the source does not deliver a video stream ffmpeg understands"),
    )
    for needle, words in rules:
        if needle in low:
            return words
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "ffmpeg ended without saying why"


class _Ffmpeg:
    """One ffmpeg process with its stderr drained (and kept, redacted) on a thread."""

    def __init__(self, command: list[str], secrets: tuple[str, ...], *, stdout: bool) -> None:
        self.secrets = secrets
        self._stderr = bytearray()
        try:
            # Its own session: a Ctrl-C aimed at the agent must not kill ffmpeg before it closes the clip.
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise FfmpegError(f"could not start ffmpeg ({command[0]}): {exc}") from exc
        self._drain = threading.Thread(target=self._drain_stderr, name="ffmpeg-stderr", daemon=True)
        self._drain.start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        drain_into(self.proc.stderr, self._stderr, _STDERR_KEEP)

    def stderr(self) -> str:
        return redact(self._stderr.decode("utf-8", "replace"), *self.secrets)

    def stop(self) -> int:
        """Ask ffmpeg to finish (SIGINT closes the current clip properly), then insist."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(_STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        code = self.proc.wait()
        self._drain.join(timeout=5)
        return code


class _ClipList:
    """Tails the segment muxer's CSV list: each line is a clip ffmpeg has closed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_entries(self) -> list[tuple[str, float, float]]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1          # only whole lines: ffmpeg may be mid-write
        self._offset += end
        rows = []
        for row in csv.reader(io.StringIO(data[:end].decode("utf-8", "replace"))):
            if len(row) >= 3:
                with contextlib.suppress(ValueError):
                    rows.append((row[0], float(row[1]), float(row[2])))
        return rows


class SessionClock:
    """Places one session's clips on the agent's wall clock from the stream times ffmpeg lists for them.

    The first clip anchors the session: stream time ``end`` was "now" when ffmpeg reported the clip closed.
    Later clips follow from their listed stream times, so clips of a session are back to back exactly as the
    camera's packets are. A clip closes only after its content arrived, so "drift" (report time minus
    content end) is normally a small positive latency; a camera whose timestamps jump (or a server that sends
    a burst at start) shows up as drift beyond ``tolerance_s`` either way, and the session is re-anchored there.
    The first clip's report may lag its content by the stream's start-up buffering (about 2 s when audio is
    encoded); that bias stays with the session rather than overlapping clips.
    """

    def __init__(self, tolerance_s: float = 5.0, max_latency_s: float = 10.0) -> None:
        self.anchor: datetime | None = None
        self.tolerance_s = tolerance_s
        self.max_latency_s = max_latency_s
        self.reanchored = 0

    def place(self, now: datetime, start_s: float, end_s: float) -> datetime:
        if self.anchor is not None:
            drift = (now - (self.anchor + timedelta(seconds=end_s))).total_seconds()
            if -self.tolerance_s <= drift <= self.max_latency_s:
                return self.anchor + timedelta(seconds=start_s)
            self.reanchored += 1
        self.anchor = now - timedelta(seconds=end_s)
        return self.anchor + timedelta(seconds=start_s)


class PassthroughRecorder:
    """The capture loop for a compressed camera stream; same role and reporting as :class:`.recorder.Recorder`."""

    def __init__(self, config: AgentConfig, settings: Callable[[], SettingsSnapshot],
                 handoff: Callable[[RecordedClip], None], scratch: Path, stop: threading.Event, *,
                 utc: Callable[[], datetime] = lambda: datetime.now(UTC),
                 monotonic: Callable[[], float] = time.monotonic,
                 on_motion: Callable[[float], None] | None = None) -> None:
        self.config = config
        self.settings = settings
        self.handoff = handoff
        self.scratch = scratch
        self.stop = stop
        self.utc = utc
        self.monotonic = monotonic
        self.url = config.camera_device
        self.detect_url = config.detect_device
        password = url_password(self.url) or ""
        detect_password = url_password(self.detect_url) if self.detect_url else ""
        self.secrets = tuple(s for s in {password, unquote(password), detect_password, unquote(detect_password)}
                             if s)
        self.source_state = "starting"
        self.motion_state = "ok"
        self.detect_state = "main stream keyframes" if not self.detect_url else "starting"
        self.stream: StreamInfo | None = None
        self.refused: str | None = None          # set when the camera's codec cannot be passed through
        self.clips = 0
        self.tap = MotionTap(settings().settings, monotonic=monotonic, on_motion=on_motion)
        self._sessions = 0
        self._offline_since: datetime | None = None
        self._offline_reason = ""
        self._last_end: datetime | None = None      # when the newest clip ended, on the agent's clock

    @property
    def display_url(self) -> str:
        return redact(self.url, *self.secrets)

    # -- the reconnect loop -----------------------------------------------------------------------------
    def run(self, keep_going: Callable[[], bool] = lambda: True) -> None:
        backoff = 1.0
        while not self.stop.is_set() and keep_going() and self.refused is None:
            plan = PassthroughPlan.build(self.settings(), self.config)
            clips_before = self.clips
            reason = self._session(plan, keep_going)
            if reason is None:
                continue                                  # ended on purpose (settings changed, stop)
            if self.clips > clips_before:
                backoff = 1.0
            if self._offline_since is None:
                self._offline_since, self._offline_reason = self._last_end or self.utc(), reason
                log.warning("camera %s offline since %s: %s", self.display_url, utc_stamp(self._offline_since),
                            reason)
            self.source_state = f"offline since {utc_stamp(self._offline_since)}: {reason}; retrying in " \
                                f"{backoff:.0f}s"
            self.stop.wait(backoff)
            backoff = min(self.config.source_retry_max_seconds, backoff * 2)

    def _session(self, plan: PassthroughPlan, keep_going: Callable[[], bool]) -> str | None:
        """Record until stop/settings change (returns None) or until the camera fails (returns why)."""
        self._sessions += 1
        out = self.scratch / f"session-{self._sessions:06d}"
        out.mkdir(mode=0o700)
        self.tap.configure(plan.settings)
        self.tap.restart_clip()
        motion_from_main = not self.detect_url
        try:
            proc = _Ffmpeg(recording_command(self.url, out, plan, transport=self.config.rtsp_transport,
                                             motion_from_main=motion_from_main), self.secrets,
                           stdout=motion_from_main)
        except FfmpegError as exc:
            return str(exc)
        feeders = [threading.Thread(target=self._feed_from, args=(proc, "main stream keyframes"),
                                    name="motion-main", daemon=True)] if motion_from_main else \
            [threading.Thread(target=self._detect_loop, args=(plan, proc), name="motion-detect", daemon=True)]
        for t in feeders:
            t.start()
        clips = _ClipList(out / "clips.csv")
        progress = self.monotonic()               # when ffmpeg last closed a clip (or started)
        clock = SessionClock()
        first = True
        requested = False
        try:
            while True:
                for name, start, end in clips.new_entries():
                    self._finished(out / name, start, end, plan, clock)
                    first, progress = False, self.monotonic()
                if proc.proc.poll() is not None:
                    break
                if self.stop.is_set() or not keep_going() or \
                        PassthroughPlan.build(self.settings(), self.config).session_key() != plan.session_key():
                    requested = True
                    proc.stop()
                    continue                      # pick up the clip ffmpeg closed on its way out
                if self.monotonic() - progress > 2 * plan.clip_seconds + 30:
                    proc.stop()                   # connected but no video arrives: treat as a failure
                    return "the camera stopped sending video (no clip closed in twice the clip length)"
                self.stop.wait(_POLL_S)
        finally:
            code = proc.stop()
            for name, start, end in clips.new_entries():
                self._finished(out / name, start, end, plan, clock)
                first = False
            for t in feeders:
                t.join(timeout=_STOP_WAIT_S)
            for leftover in out.iterdir():        # plaintext never outlives its session
                leftover.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                out.rmdir()
        if requested:
            return None
        return explain(proc.stderr()) if code != 0 or first else "the camera ended its stream"

    def _finished(self, path: Path, start_s: float, end_s: float, plan: PassthroughPlan,
                  clock: SessionClock) -> None:
        """A clip ffmpeg closed: place it on the agent's clock, attach its motion, hand it to the finisher."""
        now = self.utc()
        summary, motion_error = self.tap.cut()
        captured_at = clock.place(now, start_s, end_s)
        self._last_end = now
        # Out of the session directory (which is emptied when the session ends) before the finisher gets it.
        kept = self.scratch / f"{path.parent.name}-{path.name}"
        try:
            path.rename(kept)
            clip = CopiedClip(kept)
            info = clip.close()
        except FileNotFoundError:
            log.error("a clip from camera %s is lost: ffmpeg listed %s but did not write it", self.display_url,
                      path.name)
            return
        except FfmpegError as exc:
            log.error("a clip from camera %s is lost: %s", self.display_url, exc)
            return
        self.stream = info.stream
        if info.stream.codec not in PLAYABLE_CODECS:
            # Not stored: nobody could play it. The transcoding recorder takes over as this session ends.
            self.refused = (f"the camera sends {info.stream.codec}, which browsers cannot play; recording "
                            "re-encodes it to H.264 instead")
            log.warning("camera %s: %s; the %.1f s copied as sent are discarded", self.display_url, self.refused,
                        info.duration_s)
            clip.abort()
            return
        self.tap.configure(plan.settings, (info.stream.width, info.stream.height))
        self._check_detect_aspect(info.stream)
        gap = None
        if self._offline_since is not None:
            gap = SourceGap(self._offline_since, captured_at, self._offline_reason)
            log.warning("camera %s was offline from %s to %s: %s", self.display_url, utc_stamp(gap.start),
                        utc_stamp(gap.end), gap.reason)
            self._offline_since = None
        self.source_state = "ok"
        self.motion_state = "ok" if motion_error is None else f"error: {motion_error}"
        self.clips += 1
        self.handoff(RecordedClip(clip, plan, captured_at, summary, motion_error, gap))

    def _check_detect_aspect(self, main: StreamInfo) -> None:
        size = self.tap.frame_size
        if not self.detect_url or size is None or not main.height:
            return
        main_ratio, detect_ratio = main.width / main.height, size[0] / size[1]
        if abs(main_ratio - detect_ratio) / main_ratio > 0.03:
            self.detect_state = (f"the detect stream's picture ({size[0]}x{size[1]}) has another shape than the "
                                 f"main stream ({main.width}x{main.height}); motion zones are placed on the "
                                 "detect picture")
        elif self.detect_state.startswith("the detect stream's picture"):
            self.detect_state = "ok"

    # -- motion frames ----------------------------------------------------------------------------------
    def _feed_from(self, proc: _Ffmpeg, what: str) -> None:
        stdout = proc.proc.stdout
        assert stdout is not None
        try:
            for frame in read_pgm_frames(stdout):
                self.tap.feed(frame)
        except PgmError as exc:
            self.tap.fail(f"{what}: {exc}")
        finally:
            stdout.close()

    def _detect_loop(self, plan: PassthroughPlan, main: _Ffmpeg) -> None:
        """Decode the sub-stream for as long as the main session runs; reconnect it on its own backoff."""
        backoff = 1.0
        while main.proc.poll() is None and not self.stop.is_set():
            assert self.detect_url is not None
            try:
                proc = _Ffmpeg(detect_command(self.detect_url, plan, transport=self.config.rtsp_transport),
                               self.secrets, stdout=True)
            except FfmpegError as exc:
                self.detect_state = f"cannot start: {exc}"
                return
            reader = threading.Thread(target=self._feed_from, args=(proc, "detect stream"), daemon=True)
            reader.start()
            self.detect_state = "ok"
            while proc.proc.poll() is None and main.proc.poll() is None and not self.stop.is_set():
                time.sleep(_POLL_S)
            proc.stop()
            reader.join(timeout=_STOP_WAIT_S)
            if main.proc.poll() is not None or self.stop.is_set():
                return
            reason = explain(proc.stderr())
            self.detect_state = f"lost: {reason}; retrying in {backoff:.0f}s"
            self.tap.fail(f"the detect stream failed: {reason}")
            log.warning("camera %s detect stream %s", self.display_url, self.detect_state)
            deadline = self.monotonic() + backoff
            while self.monotonic() < deadline and main.proc.poll() is None and not self.stop.is_set():
                time.sleep(_POLL_S)
            backoff = min(self.config.source_retry_max_seconds, backoff * 2)
