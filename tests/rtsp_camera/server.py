#!/usr/bin/python3
"""A test RTSP camera: GStreamer's RTSP server serving MP4 files' own packets, looped, paced in real time.

Run it with Debian's interpreter (``/usr/bin/python3`` has ``gi``; the project's virtualenv does not)::

    /usr/bin/python3 tests/rtsp_camera/server.py --port 8554 --media-dir DIR \
        [--username U --password P] --mount main --mount sub

``DIR/manifest.json`` (written by ``tests/rtsp_camera/media.py``) names each mount's file, codecs and
length. The server binds 127.0.0.1 only, prints ``READY rtsp://127.0.0.1:PORT`` on stdout once it listens
(``--port 0`` picks a free port; READY names it) and exits 0 on SIGTERM or SIGINT. With a username and
password every request needs basic auth; a missing or wrong password gets ``RTSP/1.0 401 Unauthorized``.

No re-encoding: a mount is ``filesrc ! qtdemux ! h264parse|h265parse config-interval=-1 ! rtph264pay|
rtph265pay`` (plus ``aacparse ! rtpmp4gpay`` for an AAC track), so the RTP payloads carry the file's own
NAL units and AAC frames. The media keep SPS/PPS (H.265: VPS/SPS/PPS) in-band in every keyframe, so the
parser finds them there and inserts nothing: a client's depacketised access units are byte-identical to
the file's packets, apart from the framing its container uses (length prefixes or start codes; compare
with ``tests/rtsp_camera/packets.py``). Measured with ffmpeg ``-c copy`` into Matroska: every packet of
every H.264/H.265 mount, video and audio, across the loop point. An MJPEG mount is ``jpegparse !
rtpjpegpay`` (RFC 2435 carries each JPEG's scan data and the client rebuilds its headers, so the pictures
match the file's, not the bytes); an audio-only mount is its AAC branch alone, paid out as ``pay0``.

The loop. The file plays as a *segment*; at its end qtdemux sends SEGMENT_DONE instead of EOS and the
server seeks back to 0 without flushing, so the pipeline never stops and running time keeps growing (see
:class:`Loop`).
What a client sees at the loop point: the file's last packet, then its first packet (a keyframe) one
frame duration later. RTP timestamps and the client's PTS keep the file's frame rate: no jump back, no
gap, no RTP discontinuity, no new SPS; audio wraps the same way. Only the on-screen clock in the picture
jumps back by the file's length.

Like a camera, the media is live for its clients: shared by all clients of a mount, started from the
file's beginning when the first client of an idle mount arrives, and not seekable (PLAY's ``Range`` is
ignored, so a second client joins at the current position instead of rewinding everybody).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

HOST = "127.0.0.1"
ROLE = "camera-user"
_PARSE_AND_PAY = {
    "h264": "h264parse config-interval=-1 ! rtph264pay name=pay{n} pt=96",
    "h265": "h265parse config-interval=-1 ! rtph265pay name=pay{n} pt=96",
    "mjpeg": "jpegparse ! rtpjpegpay name=pay{n} pt=26",
}
_AUDIO_PAY = {"aac": "aacparse ! rtpmp4gpay name=pay{n} pt=97"}


def launch_line(path: Path, video: str | None, audio: str | None) -> str:
    """The factory's pipeline for one MP4 file: demux, parse and payload, never decode."""
    if video is not None and video not in _PARSE_AND_PAY:
        raise SystemExit(f"video codec {video!r} in the manifest is not one of {sorted(_PARSE_AND_PAY)}")
    if audio is not None and audio not in _AUDIO_PAY:
        raise SystemExit(f"audio codec {audio!r} in the manifest is not one of {sorted(_AUDIO_PAY)}")
    if video is None and audio is None:
        raise SystemExit(f"{path.name} has neither video nor audio in the manifest")
    location = str(path).replace("\\", "\\\\").replace('"', '\\"')
    branches = []          # the payloaders are pay0, pay1, ... in this order, as gst-rtsp-server wants
    if video is not None:
        branches.append(f"demux.video_0 ! queue ! {_PARSE_AND_PAY[video].format(n=len(branches))}")
    if audio is not None:
        branches.append(f"demux.audio_0 ! queue ! {_AUDIO_PAY[audio].format(n=len(branches))}")
    return f'( filesrc location="{location}" ! qtdemux name=demux {" ".join(branches)} )'


class LoopingFactory(GstRtspServer.RTSPMediaFactory):
    """A shared media factory whose pipelines replay their file forever (see the module docstring)."""

    def __init__(self, launch: str, loop_ns: int, lead: str = "video") -> None:
        super().__init__()
        self.loop_ns = loop_ns
        self.lead = lead
        self.set_launch(launch)
        self.set_shared(True)
        self.connect("media-configure", self._on_media_configure)

    def _on_media_configure(self, _factory: GstRtspServer.RTSPMediaFactory,
                            media: GstRtspServer.RTSPMedia) -> None:
        bin_ = media.get_element()
        payloaders = [bin_.get_by_name(f"pay{i}") for i in range(2)]
        loop = Loop(bin_.get_by_name("demux"), [pay.get_static_pad("sink") for pay in payloaders if pay], self.loop_ns,
                    self.lead)
        media.connect("prepared", lambda _media: loop.first_pass(bin_))


class Loop:
    """Replays one qtdemux's file forever as back-to-back segments whose running times line up exactly.

    Once the media is prepared (during the first client's DESCRIBE), a flushing SEGMENT seek restarts the
    file as a segment, and the handler waits until the pipeline has prerolled again: the flush leaves the
    payloaders without a segment for a moment, and a PLAY answered in that moment aborts gst-rtsp-server
    1.22 (``gst_rtsp_media_get_rates``: assertion failed). At the end of a pass qtdemux sends SEGMENT_DONE
    rather than EOS (an EOS would end the stream for good) and the next pass starts with a non-flushing
    SEGMENT seek back to 0: nothing is flushed and the pipeline never stops.

    A non-flushing seek accumulates running time only up to the demuxer's position, the *start* of the
    last buffer it pushed, so a plain loop would stamp the file's first frame with the time of its last
    frame. Each pass therefore adds ``loop_ns`` minus the last buffer's PTS to the offsets of the
    payloaders' sink pads: pass ``n`` starts at running time ``n * loop_ns``, one frame after the previous
    pass's last frame. (Not on the demuxer's pads: a new offset re-sends a pad's sticky events, and caps
    arriving again make h264parse put SPS/PPS in front of the next keyframe, changing its bytes.)

    The demuxer's pads answer SEEKING queries with "no", like a live camera, so that a client's PLAY with
    a ``Range`` never rewinds the shared media for everybody. ``lead`` ("video", or "audio" for an
    audio-only file) is the stream whose SEGMENT_DONE starts the next pass: qtdemux sends one per stream.
    """

    def __init__(self, demux: Gst.Element, pay_pads: list[Gst.Pad], loop_ns: int, lead: str = "video") -> None:
        self.demux = demux
        self.lead = lead
        self.loop_ns = loop_ns
        self.pay_pads = pay_pads
        self.last_pts = 0  # the largest buffer PTS of this pass, over all streams
        demux.connect("pad-added", self._on_pad_added)

    def first_pass(self, pipeline: Gst.Element) -> None:
        self._seek(Gst.SeekFlags.FLUSH)
        change, _, _ = pipeline.get_state(10 * Gst.SECOND)
        if change == Gst.StateChangeReturn.FAILURE:
            print(f"{pipeline.get_name()} did not preroll after the first segment seek", file=sys.stderr, flush=True)

    def _on_pad_added(self, _demux: Gst.Element, pad: Gst.Pad) -> None:
        pad.add_probe(Gst.PadProbeType.QUERY_UPSTREAM, _not_seekable)
        pad.add_probe(Gst.PadProbeType.BUFFER, self._on_buffer)
        if pad.get_name().startswith(self.lead):
            pad.add_probe(Gst.PadProbeType.EVENT_DOWNSTREAM, self._on_lead_event)

    def _on_buffer(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        pts = info.get_buffer().pts
        if pts != Gst.CLOCK_TIME_NONE and pts > self.last_pts:
            self.last_pts = pts
        return Gst.PadProbeReturn.OK

    def _on_lead_event(self, _pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        if info.get_event().type == Gst.EventType.SEGMENT_DONE:
            # Not from the streaming thread: qtdemux pauses its task after SEGMENT_DONE; the seek restarts it.
            GLib.idle_add(self._next_pass)
        return Gst.PadProbeReturn.OK

    def _next_pass(self) -> bool:
        for pad in self.pay_pads:
            pad.set_offset(pad.get_offset() + self.loop_ns - self.last_pts)
        self.last_pts = 0
        self._seek(Gst.SeekFlags.NONE)
        return GLib.SOURCE_REMOVE

    def _seek(self, flush: Gst.SeekFlags) -> None:
        flags = Gst.SeekFlags.SEGMENT | flush
        if not self.demux.seek(1.0, Gst.Format.TIME, flags, Gst.SeekType.SET, 0, Gst.SeekType.SET, self.loop_ns):
            print(f"segment seek in {self.demux.get_parent().get_name()} was refused", file=sys.stderr, flush=True)


def _not_seekable(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    """Answer SEEKING queries with "no" (a new query already says so; PyGObject's reference makes it read-only)."""
    return Gst.PadProbeReturn.HANDLED if info.get_query().type == Gst.QueryType.SEEKING else Gst.PadProbeReturn.OK


def make_auth(username: str, password: str) -> GstRtspServer.RTSPAuth:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, ROLE)
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(username, password), token)
    return auth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--media-dir", type=Path, required=True, help="a folder with manifest.json")
    parser.add_argument("--username", help="require basic auth with this user (needs --password)")
    parser.add_argument("--password", help="the user's password")
    parser.add_argument("--mount", action="append", required=True, help="a mount in the manifest (repeat)")
    args = parser.parse_args(argv)
    if (args.username is None) != (args.password is None):
        parser.error("give both --username and --password, or neither")

    manifest_path = args.media_dir / "manifest.json"
    try:
        mounts = json.loads(manifest_path.read_text())["mounts"]
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"cannot read the mounts of {manifest_path} ({exc}); generate it with tests/rtsp_camera/media.py")
    unknown = sorted(set(args.mount) - set(mounts))
    if unknown:
        parser.error(f"mounts {unknown} are not in {manifest_path}; it has {sorted(mounts)}")

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    if args.username is not None:
        server.set_auth(make_auth(args.username, args.password))
    points = server.get_mount_points()
    for name in args.mount:
        entry = mounts[name]
        launch = launch_line(args.media_dir / entry["file"], entry["video"], entry.get("audio"))
        factory = LoopingFactory(launch, entry["frames"] * Gst.SECOND // entry["fps"],
                                 "video" if entry["video"] else "audio")
        if args.username is not None:
            factory.add_role_from_structure(Gst.Structure.new_from_string(
                f"{ROLE}, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"))
        points.add_factory(f"/{name}", factory)

    loop = GLib.MainLoop()
    if server.attach(None) == 0:
        print(f"cannot listen on {HOST}:{args.port} (in use?)", file=sys.stderr, flush=True)
        return 1
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signum, lambda: loop.quit() or GLib.SOURCE_REMOVE)
    print(f"READY rtsp://{HOST}:{server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
