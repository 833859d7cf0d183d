"""The ``rtsp_camera`` fixture: a real RTSP camera (GStreamer's RTSP server) on a free loopback port.

One server per test session serves every mount of :func:`suite_media` behind basic auth::

    def test_records(rtsp_camera: RtspCamera) -> None:
        url = rtsp_camera.url("main")                  # rtsp://camera:...@127.0.0.1:PORT/main
        served = packet_digests(rtsp_camera.media["main"].path)
        with rtsp_camera.outage():                     # the camera is unreachable in here
            ...

The server runs under Debian's ``/usr/bin/python3`` (``server.py``); ``./dev test`` installs GStreamer and
``python3-gi`` for it. Without them the fixture skips, except when ``CI`` is set, where it fails.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # media.py imports PyAV, OpenCV and the scene: only the fixtures' users pay for them
    from tests.rtsp_camera.media import MediaSet

__all__ = ["RtspCamera", "rtsp_camera", "rtsp_media"]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("server.py")
HOST = "127.0.0.1"
PACKAGES = ("gir1.2-gst-rtsp-server-1.0 python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad "
            "gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools")


class RtspCamera:
    """A running RTSP server process and what a test needs to talk to it.

    ``stop()`` ends the process (connected clients see the connection close, new ones are refused);
    ``start()`` brings it back on the same port. Both are no-ops when already in that state.
    """

    def __init__(self, media: MediaSet, log_path: Path, *, username: str = "camera",
                 password: str = "s3cret-lens", start_timeout: float = 20.0) -> None:
        self.media = media
        self.username = username
        self.password = password
        self.host = HOST
        self.port = 0  # the server picks a free port on its first start and keeps it
        self.mounts = tuple(media.mounts)
        self._log_path = log_path
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[str] | None = None
        # Bound but never listening: connecting to it is refused, and nothing else can take the port.
        self._dead = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._dead.bind((HOST, 0))

    def url(self, mount: str, with_credentials: bool = True) -> str:
        """The mount's RTSP URL, with ``username:password@`` unless ``with_credentials`` is False."""
        self.media[mount]  # a KeyError naming the mounts there are
        credentials = f"{self.username}:{self.password}@" if with_credentials else ""
        return f"rtsp://{credentials}{self.host}:{self.port}/{mount}"

    def dead_url(self, mount: str = "main") -> str:
        """A URL whose port refuses connections for the whole session (nothing listens there)."""
        port = self._dead.getsockname()[1]
        return f"rtsp://{self.username}:{self.password}@{self.host}:{port}/{mount}"

    def media_path(self, mount: str) -> Path:
        """The MP4 file the mount serves (hash its packets with ``packets.packet_digests``)."""
        return self.media[mount].path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RtspCamera:
        """Start the server (on the same port as before, after the first start) and wait for its READY line."""
        if self.running:
            return self
        cmd = [SYSTEM_PYTHON, str(SERVER), "--port", str(self.port), "--media-dir", str(self.media.directory),
               "--username", self.username, "--password", self.password]
        for mount in self.mounts:
            cmd += ["--mount", mount]
        with self._log_path.open("a") as log:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
        assert proc.stdout is not None
        line = _read_line(proc, self._start_timeout)
        if not line.startswith("READY "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"the RTSP camera did not start (said {line!r}, exit code {proc.returncode}); "
                               f"its log {self._log_path} ends:\n{_tail(self._log_path)}")
        self.port = int(line.rsplit(":", 1)[1])
        self._proc = proc
        return self

    def stop(self) -> None:
        """End the server process (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    @contextlib.contextmanager
    def outage(self) -> Iterator[None]:
        """Stop the camera for the block's duration and start it again after, even if the block fails."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def close(self) -> None:
        self.stop()
        self._dead.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return f"nothing within {timeout:.0f} s"
    return proc.stdout.readline().strip()


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({exc})"


def _gi_problem() -> str | None:
    """Why ``/usr/bin/python3`` cannot run the server, or None when it can import ``gi``."""
    try:
        done = subprocess.run([SYSTEM_PYTHON, "-c", "import gi"], capture_output=True, text=True, timeout=30,
                              check=False)
    except OSError as exc:
        return f"{SYSTEM_PYTHON} cannot run ({exc})"
    if done.returncode != 0:
        return f"{SYSTEM_PYTHON} cannot import gi ({done.stderr.strip().splitlines()[-1:]})"
    return None


@pytest.fixture(scope="session")
def rtsp_media() -> MediaSet:
    """The test camera's media files, made on first use and cached in ``$CRYOSPY_CACHE_DIR`` or ~/.cache/cryospy."""
    from tests.rtsp_camera.media import suite_media

    cache_root = Path(os.environ.get("CRYOSPY_CACHE_DIR") or Path.home() / ".cache" / "cryospy")
    return suite_media(cache_root)


@pytest.fixture(scope="session")
def rtsp_camera(rtsp_media: MediaSet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RtspCamera]:
    """A running RTSP camera serving every mount of :func:`rtsp_media` for the whole session (see the module)."""
    problem = _gi_problem()
    if problem is not None:
        reason = f"no RTSP camera: {problem}; ./dev test installs it (apt-get install {PACKAGES})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    camera = RtspCamera(rtsp_media, tmp_path_factory.mktemp("rtsp-camera") / "server.log").start()
    try:
        yield camera
    finally:
        camera.close()
