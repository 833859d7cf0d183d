"""Which way a camera is recorded, decided from its settings and its source, and switched when they change.

* **passthrough** (:mod:`.passthrough`): the camera's own H.264/H.265 packets are stored; only motion frames
  are decoded. For stream URLs (RTSP IP cameras) when ``record_mode`` is ``auto`` or ``passthrough``.
* **transcode** (:mod:`.recorder`): frames are decoded and encoded to H.264 with the settings' size,
  colour and quality. For raw sources (USB cameras, files, the synthetic scene), when the admin asks for a
  transform (``grayscale`` or ``downscale_resolution`` under ``auto``), when ``record_mode`` is
  ``transcode``, and when the camera sends a codec browsers cannot play.

The choice is re-read between clips; a change stops one recorder at a clip boundary and starts the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from cryospy.common.settings import DeviceSettings

from .config import AgentConfig
from .passthrough import PassthroughRecorder
from .recorder import Recorder
from .stream_url import is_stream_url


def choose_mode(settings: DeviceSettings, camera: str, refused: str | None = None) -> tuple[str, str]:
    """(mode, why) for a camera: ``passthrough`` or ``transcode`` and a sentence for the admin page."""
    stream = is_stream_url(camera)
    if settings.record_mode == "transcode":
        return "transcode", "record_mode is transcode"
    if not stream:
        why = "the source delivers raw frames"
        if settings.record_mode == "passthrough":
            why += " (passthrough needs a stream URL such as rtsp://...)"
        return "transcode", why
    if refused:
        return "transcode", refused
    if settings.record_mode == "auto" and (settings.grayscale or settings.downscale_resolution):
        return "transcode", "grayscale or downscale_resolution asks for a transform"
    return "passthrough", "the camera's own stream is stored as it arrives"


class RecordingLoop:
    """Runs the recorder the settings call for; what the heartbeat reports comes from the one running."""

    def __init__(self, config: AgentConfig, settings: Callable[[], DeviceSettings], transcode: Recorder,
                 passthrough: PassthroughRecorder, stop: threading.Event) -> None:
        self.config = config
        self.settings = settings
        self.transcode = transcode
        self.passthrough = passthrough
        self.stop = stop
        self.mode, self.why = self._choose()

    def _choose(self) -> tuple[str, str]:
        return choose_mode(self.settings(), self.config.camera_device, self.passthrough.refused)

    @property
    def active(self) -> Recorder | PassthroughRecorder:
        return self.passthrough if self.mode == "passthrough" else self.transcode

    @property
    def source_state(self) -> str:
        return self.active.source_state

    @property
    def motion_state(self) -> str:
        if self.mode == "passthrough" and self.config.detect_device and self.passthrough.detect_state != "ok":
            detect = f"detect stream: {self.passthrough.detect_state}"
            state = self.passthrough.motion_state
            return detect if state == "ok" else f"{state}; {detect}"
        return self.active.motion_state

    @property
    def clips(self) -> int:
        return self.transcode.clips + self.passthrough.clips

    def _still(self, mode: str) -> Callable[[], bool]:
        """A recorder runs while the settings still call for its mode (checked between clips)."""
        return lambda: self._choose()[0] == mode

    def run(self) -> None:
        while not self.stop.is_set():
            self.mode, self.why = self._choose()
            self.active.run(keep_going=self._still(self.mode))
            if self.mode == "transcode" and not self.stop.is_set() and self._choose()[0] == "transcode":
                return      # the transcoding recorder ended for good (a file played once)
