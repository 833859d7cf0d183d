"""The test camera's media: MP4 files that look like an IP camera's streams, made once and cached.

Every file is rendered from :class:`SyntheticScene` (a textured room, sensor noise, an object crossing every
4 s, an on-screen clock) and encoded like an IP camera encodes: no B-frames, a fixed GOP with no scene-cut
keyframes, and the parameter sets (SPS/PPS; H.265 VPS/SPS/PPS) repeated in-band in every keyframe, so that
GStreamer's ``h264parse config-interval=-1`` has nothing to insert and the RTP stream carries exactly the
file's packets (see ``server.py``). A main stream and its sub-stream are scaled from the same rendered frames
in one ffmpeg run, so they show the same scene at the same instants.

:func:`suite_media` makes the test suite's set (small, a few seconds to build, cached under
``<cache_root>/rtsp-media/<key>`` where the key hashes this module and the scene's source, so a change to
either makes a new set); :func:`make_bench_media` makes the benchmarks' 1080p/4K set. Both write a
``manifest.json`` that ``server.py`` reads and :meth:`MediaSet.load` parses.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cryospy.common.ffmpeg_tool import ffmpeg_exe
from cryospy.edge_agent import synthetic
from cryospy.edge_agent.synthetic import SyntheticScene

__all__ = ["AAC_FRAME", "AAC_RATE", "MANIFEST", "MediaSet", "MountMedia", "make_bench_media", "suite_media"]

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
AAC_RATE = 16000  # samples per second of the AAC track (mono, like a camera's microphone)
AAC_FRAME = 1024  # samples per AAC packet


@dataclass(frozen=True)
class MountMedia:
    """One mount's file and what is in it.

    ``video`` is ``"h264"``, ``"h265"``, ``"mjpeg"`` or None (an audio-only mount, whose size is 0x0 and whose
    ``fps`` and ``frames`` still give the length of the server's loop); ``audio`` is ``"aac"`` or None.
    """

    name: str
    path: Path
    video: str | None
    width: int
    height: int
    fps: int
    gop_frames: int
    frames: int
    audio: str | None = None
    moving: bool = True

    @property
    def duration(self) -> float:
        """Seconds of video in the file: one pass of the server's loop."""
        return self.frames / self.fps


@dataclass(frozen=True)
class MediaSet:
    """A folder of camera media and its manifest, keyed by mount name."""

    directory: Path
    mounts: dict[str, MountMedia]

    def __getitem__(self, mount: str) -> MountMedia:
        try:
            return self.mounts[mount]
        except KeyError:
            raise KeyError(f"no mount {mount!r} in {self.directory}; it has {sorted(self.mounts)}") from None

    @classmethod
    def load(cls, directory: Path) -> MediaSet:
        data = json.loads((directory / MANIFEST).read_text())
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"{directory / MANIFEST} has version {data.get('version')!r}, not {MANIFEST_VERSION}")
        mounts = {}
        for name, fields in data["mounts"].items():
            fields = dict(fields)
            path = directory / fields.pop("file")
            mounts[name] = MountMedia(name=name, path=path, **fields)
        return cls(directory, mounts)

    def write_manifest(self) -> None:
        mounts = {}
        for name, media in self.mounts.items():
            fields = asdict(media)
            del fields["name"], fields["path"]
            mounts[name] = {"file": media.path.name, **fields}
        (self.directory / MANIFEST).write_text(json.dumps({"version": MANIFEST_VERSION, "mounts": mounts}, indent=2))


@dataclass(frozen=True)
class Rendition:
    """One encoded output of a scene: a mount name, a size and an encoder setting (``video``: h264, h265,
    mjpeg)."""

    mount: str
    width: int
    height: int
    video: str = "h264"
    kbps: int = 0  # 0: constant quality (CRF 26) instead of a bitrate cap


# The test suite's set: cheap to make, cheap to stream, and every file loops every SECONDS.
TEST_FPS = 15
TEST_GOP_SECONDS = 1
TEST_SECONDS = 8  # two crossings of the moving object, so the picture at the loop point matches up


def suite_media(cache_root: Path) -> MediaSet:
    """The test suite's media, made on first use (a few seconds) and then read from the cache.

    Mounts: ``main`` (H.264 640x360), ``sub`` (H.264 320x180 of the same scene), ``main_h265`` (H.265
    640x360), ``main_aac`` (``main``'s very packets plus an AAC track), ``still`` and ``still_sub`` (the
    room with sensor noise only: no moving object, no clock). All 15 fps, a keyframe every second, 8 s.

    Cameras that are bad input for passthrough: ``audio_only`` (``main_aac``'s tone and no video track),
    ``mjpeg`` (Motion JPEG 640x360 of the moving scene: every frame a keyframe) and ``sub_4x3`` (H.264
    320x240 of the moving scene, stretched: a sub-stream of another shape than ``main``). They are rendered
    in a second pass over the same frames, so the files above are made exactly as before.
    """
    key = _source_key()
    final = cache_root / "rtsp-media" / key
    if (final / MANIFEST).is_file():
        return MediaSet.load(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=final.parent))
    try:
        mounts: dict[str, MountMedia] = {}
        moving = SyntheticScene(width=640, height=360, fps=TEST_FPS, seed=1)
        mounts |= render(work, moving, TEST_SECONDS, TEST_GOP_SECONDS,
                         [Rendition("main", 640, 360, kbps=1000), Rendition("sub", 320, 180, kbps=250),
                          Rendition("main_h265", 640, 360, video="h265", kbps=800)])
        mounts["main_aac"] = add_aac(mounts["main"], "main_aac")
        still = SyntheticScene(width=640, height=360, fps=TEST_FPS, seed=2, moving=False, timestamp=False,
                               noise_sigma=3.0)
        mounts |= render(work, still, TEST_SECONDS, TEST_GOP_SECONDS,
                         [Rendition("still", 640, 360, kbps=1000), Rendition("still_sub", 320, 180, kbps=250)])
        mounts |= render(work, moving, TEST_SECONDS, TEST_GOP_SECONDS,
                         [Rendition("sub_4x3", 320, 240, kbps=250), Rendition("mjpeg", 640, 360, video="mjpeg")])
        mounts["audio_only"] = aac_only(mounts["main"], "audio_only")
        MediaSet(work, mounts).write_manifest()
        work.chmod(0o755)  # mkdtemp made it private
        try:
            work.rename(final)
        except OSError:  # another process finished the same set first: use theirs
            if not (final / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return MediaSet.load(final)


def make_bench_media(directory: Path, *, seconds: int = 30, uhd_seconds: int = 10) -> MediaSet:
    """The benchmarks' set in ``directory`` (made if its manifest is missing): camera-sized streams at 25 fps.

    ``main`` is H.264 1920x1080 at about 4 Mbit/s and ``sub`` H.264 640x360 of the same scene (``seconds``
    long); ``main_uhd`` is H.265 3840x2160 at about 8 Mbit/s (``uhd_seconds`` long; 0 leaves it out). A
    keyframe every 2 s, like most cameras. The server loops every file, so a short file serves a long run.
    Rendering and encoding 4K is slow on two cores (measure it; it is printed).
    """
    if (directory / MANIFEST).is_file():
        return MediaSet.load(directory)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scene = SyntheticScene(width=1920, height=1080, fps=25, seed=3)
    mounts = render(directory, scene, seconds, 2,
                    [Rendition("main", 1920, 1080, kbps=4000), Rendition("sub", 640, 360, kbps=512)])
    print(f"[rtsp-media] 1080p + sub, {seconds} s: {time.monotonic() - started:.0f} s", flush=True)
    if uhd_seconds:
        started = time.monotonic()
        uhd = SyntheticScene(width=3840, height=2160, fps=25, seed=3)
        mounts |= render(directory, uhd, uhd_seconds, 2, [Rendition("main_uhd", 3840, 2160, "h265", kbps=8000)])
        print(f"[rtsp-media] 2160p H.265, {uhd_seconds} s: {time.monotonic() - started:.0f} s", flush=True)
    media = MediaSet(directory, mounts)
    media.write_manifest()
    return media


def render(directory: Path, scene: SyntheticScene, seconds: int, gop_seconds: int,
           renditions: Sequence[Rendition]) -> dict[str, MountMedia]:
    """Render ``scene`` once and encode it into one MP4 per rendition, all in one ffmpeg process."""
    fps = round(scene.fps)
    if fps != scene.fps:
        raise ValueError(f"scene fps {scene.fps} must be a whole number (cameras use 15, 25, 30)")
    gop = fps * gop_seconds
    frames = seconds * fps
    split = "".join(f"[v{i}]" for i in range(len(renditions)))
    chains = [f"[0:v]split={len(renditions)}{split}"]
    outputs: list[str] = []
    for i, r in enumerate(renditions):
        scale = "" if (r.width, r.height) == (scene.width, scene.height) else f"scale={r.width}:{r.height}:flags=area,"
        pix_fmt = "yuvj420p" if r.video == "mjpeg" else "yuv420p"   # full-range, as JPEG is
        chains.append(f"[v{i}]{scale}format={pix_fmt}[o{i}]")
        outputs += ["-map", f"[o{i}]", *_encoder_args(r, gop), "-an", "-movflags", "+faststart",
                    str(directory / f"{r.mount}.mp4")]
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{scene.width}x{scene.height}", "-r", str(fps), "-i", "-",
           "-filter_complex", ";".join(chains), *outputs]
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=errors)
        assert proc.stdin is not None
        try:
            for i in range(frames):
                proc.stdin.write(scene.frame(i).tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass  # ffmpeg died: its stderr says why
        if proc.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"ffmpeg could not encode the camera media:\n{errors.read().decode(errors='replace')}")
    return {r.mount: MountMedia(r.mount, directory / f"{r.mount}.mp4", r.video, r.width, r.height, fps,
                                1 if r.video == "mjpeg" else gop, frames, moving=scene.moving)
            for r in renditions}


def add_aac(media: MountMedia, mount: str) -> MountMedia:
    """``media``'s video packets, copied untouched, plus a mono AAC-LC track (a 1 kHz beep every second).

    The tone is encoded to ADTS first and then muxed by copy, so that neither track gets an edit list or a
    shifted start (qtdemux and ffmpeg disagree about the edit list ffmpeg writes for the AAC encoder's
    priming frame, and shifting away its negative timestamp moved the video's). The track ends before the
    video does, so every audio packet lies inside the server's loop segment and is served on every pass.
    """
    path = media.path.with_name(f"{mount}.mp4")
    tone = _tone(media, mount)
    _run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(media.path), "-i", str(tone),
          "-map", "0:v", "-map", "1:a", "-c", "copy", "-use_editlist", "0", "-movflags", "+faststart", str(path)],
         f"add an AAC track to {media.path}")
    tone.unlink()
    return MountMedia(mount, path, media.video, media.width, media.height, media.fps, media.gop_frames,
                      media.frames, audio="aac", moving=media.moving)


def aac_only(media: MountMedia, mount: str) -> MountMedia:
    """A camera's audio channel without its video: the tone :func:`add_aac` adds to ``media``, alone.

    It keeps ``media``'s frame rate and frame count, which here only say how long the server's loop is.
    """
    path = media.path.with_name(f"{mount}.mp4")
    tone = _tone(media, mount)
    _run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(tone), "-map", "0:a", "-c", "copy",
          "-use_editlist", "0", "-movflags", "+faststart", str(path)], f"put an AAC track alone in {path.name}")
    tone.unlink()
    return MountMedia(mount, path, None, 0, 0, media.fps, 0, media.frames, audio="aac", moving=False)


def _tone(media: MountMedia, mount: str) -> Path:
    """A mono AAC-LC beep in ADTS, one packet shorter than ``media``'s video (see :func:`add_aac`)."""
    packets = int(media.duration * AAC_RATE) // AAC_FRAME  # the encoder adds a priming frame to the content's
    seconds = (packets - 1) * AAC_FRAME / AAC_RATE
    tone = media.path.with_name(f"{mount}.aac")
    _run([_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y",
          "-f", "lavfi", "-i", f"sine=frequency=1000:beep_factor=4:sample_rate={AAC_RATE}:duration={seconds}",
          "-c:a", "aac", "-b:a", "32k", "-ac", "1", "-f", "adts", str(tone)], f"encode a tone for {mount}")
    return tone


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ffmpeg could not {what}:\n{done.stderr}")


def _encoder_args(r: Rendition, gop: int) -> list[str]:
    rate = ["-b:v", f"{r.kbps}k", "-maxrate", f"{r.kbps}k", "-bufsize", f"{2 * r.kbps}k"] if r.kbps else ["-crf", "26"]
    if r.video == "h264":
        # Main profile without B-frames, SPS/PPS before every IDR (x264's repeat-headers), no scene-cut keyframes.
        return ["-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0", "-g", str(gop),
                "-keyint_min", str(gop), "-sc_threshold", "0", "-x264-params", "repeat-headers=1", *rate]
    if r.video == "h265":
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:bframes=0:repeat-headers=1:log-level=error"
        return ["-c:v", "libx265", "-preset", "ultrafast", "-x265-params", params, *rate]
    if r.video == "mjpeg":
        # What RTP/JPEG (RFC 2435) carries: baseline 4:2:0, no restart markers, and the standard Huffman tables,
        # because the client rebuilds every header from RFC 2435's defaults (ffmpeg's own optimal tables would
        # decode as garbage there). Quality, not bitrate, like a camera's MJPEG setting.
        return ["-c:v", "mjpeg", "-huffman", "default", "-q:v", "6"]
    raise ValueError(f"video codec {r.video!r} is not h264, h265 or mjpeg")


@functools.cache
def _ffmpeg() -> str:
    exe = ffmpeg_exe()
    encoders = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False).stdout
    missing = [name for name in ("libx264", "libx265", "aac", "mjpeg") if f" {name} " not in encoders]
    if missing:
        raise RuntimeError(f"{exe} has no {', '.join(missing)} encoder; the camera media need them. Point "
                           "CRYOSPY_FFMPEG at the ffmpeg bundled with imageio-ffmpeg, which has them all")
    return exe


def _source_key() -> str:
    """A short hash of everything that decides the test media's bytes: this module and the scene's code."""
    digest = hashlib.sha256()
    for module in (synthetic, inspect.getmodule(_source_key)):
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


if __name__ == "__main__":  # make the test set by hand: python -m tests.rtsp_camera.media
    root = Path(os.environ.get("CRYOSPY_CACHE_DIR") or Path.home() / ".cache" / "cryospy")
    t0 = time.monotonic()
    made = suite_media(root)
    print(f"{made.directory} in {time.monotonic() - t0:.1f} s")
