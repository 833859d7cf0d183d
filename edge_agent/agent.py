"""The edge agent, top to bottom: one line per subsystem, each a loop with ``run()`` and the shared stop event.

    identity    registers the device's public signing key (made at first start)        signing_identity.py
    settings    polls the server's settings (ETag), caches them in the spool dir       settings_sync.py
    recorder    camera → constant-rate clips, motion on every frame                     recorder.py
    finisher    clip → keep/discard (motion_only) → metadata box → seal → spool         finisher.py
    uploader    spool → upload slot → PUT → forget (once the key is registered)        uploader.py
    heartbeat   health and the applied settings → server, every settings interval      heartbeat.py
    events      motion start/end, camera online/offline → server, as they happen        live_events.py
    live        while someone watches: each new fragment → sealed live part → upload    live_view.py

It starts and records even when the server is unreachable: nothing here needs the network before the first
clip (the settings come from the cache, or the defaults), and clips wait in the spool. SIGTERM/SIGINT end
the current clip early (it is sealed and kept), make one last upload pass, and exit. A server that holds a
different signing key for this device stops the agent (:class:`SigningKeyConflict`, raised by :meth:`run`).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryospy import __version__
from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.settings import DeviceSettings, parse_resolution

from .api_client import ApiClient
from .config import AgentConfig
from .errors import ConfigError
from .finisher import ClipFinisher
from .heartbeat import Heartbeat
from .live_events import EventReporter
from .live_view import ClipTail, LiveParts, LiveWatch
from .passthrough import PassthroughRecorder
from .recorder import Recorder
from .recording import RecordingLoop
from .scratch import close_scratch, open_scratch
from .settings_sync import SettingsSync
from .signing_identity import KeyRegistration, device_signing_key
from .sources import FrameSource, open_source
from .spool import Spool
from .stream_url import redact
from .uploader import Uploader

log = logging.getLogger(__name__)


PINS = ("clip_seconds", "fps", "width", "height", "crf", "keyframe_seconds", "settings_sync_seconds")


def agent_status(spool: Spool, recording: RecordingLoop, settings: SettingsSync, started: float) -> dict[str, Any]:
    """The heartbeat document (the fields the server's /v1/device/heartbeat accepts): health, how the camera
    is recorded (mode, the stream as stored, what a USB camera granted), the settings in use with their ETag
    and the config's local pins, so the admin sees what the camera really does. Nothing here carries the
    camera URL: states are redacted where they are made."""
    depth, size = spool.stats()
    next_sequence = spool.next_sequence()
    snapshot = settings.current()
    pinned = {name: getattr(settings.config, name) for name in PINS if getattr(settings.config, name) is not None}
    passthrough = recording.passthrough
    stream = passthrough.stream.describe() if recording.mode == "passthrough" and passthrough.stream else ""
    return {
        "agent_version": __version__, "spool_depth": depth, "spool_bytes": size, "dropped_clips": spool.dropped,
        "source_state": recording.source_state, "motion_state": recording.motion_state,
        "record_mode": recording.mode, "record_mode_reason": recording.why, "stream": stream,
        "capture": recording.transcode.capture if recording.mode == "transcode" else "",
        "settings_etag": snapshot.etag, "last_sequence": next_sequence - 1,
        "uptime_s": round(time.monotonic() - started, 1), "settings": snapshot.settings.to_dict(), "pinned": pinned,
    }

SourceOpener = Callable[[float], FrameSource]


def _capture_request(config: AgentConfig, settings: DeviceSettings) -> dict[str, Any]:
    """What a camera device is asked for: the config's pinned size, else the admin's downscale size, and the
    admin's capture_codec (FourCC). Files and streams ignore it."""
    size = (config.width, config.height) if config.width and config.height else \
        parse_resolution(settings.downscale_resolution) or (0, 0)
    return {"width": size[0], "height": size[1], "fourcc": settings.capture_codec}
FIRST_SYNC_WAIT_S = 5.0


@dataclass
class Agent:
    config: AgentConfig
    stop: threading.Event
    spool: Spool
    settings: SettingsSync
    recorder: RecordingLoop
    finisher: ClipFinisher
    uploader: Uploader
    heartbeat: Heartbeat
    events: EventReporter
    identity: KeyRegistration
    scratch: Path
    started: float
    live_watch: LiveWatch
    live_parts: LiveParts

    @classmethod
    def build(cls, config: AgentConfig, stop: threading.Event | None = None, *,
              source: SourceOpener | None = None) -> Agent:
        """Wire the subsystems; ``source`` replaces the camera (tests), given the planned frame rate."""
        stop = stop or threading.Event()
        try:
            DeploymentPublicKey.from_text(config.deployment_public_key)
        except Exception as exc:
            raise ConfigError(f"deployment_public_key in the agent config is not valid: {exc}") from None
        signer = device_signing_key(config)
        client = ApiClient(config)
        identity = KeyRegistration(client, signer, stop, retry_cap_s=config.upload_retry_minutes * 60)
        spool = Spool(config.spool_dir, config.spool_max_bytes)
        settings = SettingsSync(config, client, config.spool_dir / "settings.json", stop)
        scratch = open_scratch(config.spool_dir, config.temp_dir)
        wake = threading.Event()
        # The reporter polls the recording loop built below (its thread starts in run(), after build()).
        events = EventReporter(client, stop, source_state=lambda: recorder.source_state,
                               motion_state=lambda: recorder.motion_state,
                               min_seconds=lambda: settings.current().settings.motion_min_seconds)

        def sealed(entry: Any) -> None:
            wake.set()
            events.clip_sealed(entry)

        finisher = ClipFinisher(config.client_id, spool, signer, on_sealed=sealed,
                                storage_token=lambda: settings.current().storage_token or config.storage_token)
        opener = source or (lambda fps: open_source(config.camera_device, loop=config.loop, fps=fps,
                                                    **_capture_request(config, settings.current().settings)))
        recorder = RecordingLoop(
            config, lambda: settings.current().settings,
            Recorder(config, settings.current, opener, finisher.submit, scratch, stop, on_motion=events.moving),
            PassthroughRecorder(config, settings.current, finisher.submit, scratch, stop, on_motion=events.moving),
            stop)
        uploader = Uploader(config, spool, client, stop, wake, ready=identity.registered)
        started = time.monotonic()
        heartbeat = Heartbeat(client, lambda: agent_status(spool, recorder, settings, started), settings.interval,
                              stop, settings.wake.set)
        live_watch = LiveWatch(client, stop)
        def owner() -> str:        # the storage token names the device in part keys and headers, as in clips
            return settings.current().storage_token or config.storage_token or config.client_id

        live_parts = LiveParts(client, owner, signer, settings.current, ClipTail(scratch), live_watch, stop)
        return cls(config, stop, spool, settings, recorder, finisher, uploader, heartbeat, events, identity,
                   scratch, started, live_watch, live_parts)

    def status(self) -> dict[str, Any]:
        return agent_status(self.spool, self.recorder, self.settings, self.started)

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop.set())
        loops = {"identity": self.identity.run, "settings": self.settings.run, "recorder": self.recorder.run,
                 "finisher": self.finisher.run, "uploader": self.uploader.run, "heartbeat": self.heartbeat.run,
                 "events": self.events.run, "live-watch": self.live_watch.run, "live-parts": self.live_parts.run}
        threads = {name: threading.Thread(target=run, name=name, daemon=True) for name, run in loops.items()}
        threads["identity"].start()
        threads["settings"].start()
        # A first start should record with the admin's settings, not the defaults, if the server answers
        # quickly; an unreachable server delays the first clip by this much at most.
        self.settings.attempted.wait(min(FIRST_SYNC_WAIT_S, self.config.server_timeout_seconds))
        for name, t in threads.items():
            if name not in ("identity", "settings"):
                t.start()
        log.info("agent %s running: source %s (%s: %s), spool %s, settings from %s, signing key %s",
                 self.config.client_id, redact(self.config.camera_device), self.recorder.mode, self.recorder.why,
                 self.config.spool_dir, self.settings.current().origin, self.identity.fingerprint)
        try:
            while not self.stop.wait(0.5):
                pass
        finally:
            self.stop.set()
            threads["recorder"].join()
            self.finisher.close_input()          # the clip SIGTERM cut short is sealed before we go on
            threads["finisher"].join()
            for name in ("uploader", "settings", "heartbeat", "events", "identity", "live-parts"):
                threads[name].join(self.config.server_timeout_seconds + 5)
            threads["live-watch"].join(1)      # a daemon; its long-poll ends by itself within seconds
            self.uploader.drain(timeout=self.config.server_timeout_seconds + 5)
            close_scratch(self.scratch)
        log.info("agent stopped; %d clip(s) left in the spool for next time", len(self.spool.entries()))
        if self.identity.refusal is not None:
            raise self.identity.refusal


def run_agents(configs: list[AgentConfig], stop: threading.Event | None = None) -> None:
    """Run one agent per camera in this process until SIGTERM/SIGINT (or ``stop``).

    Each camera has its own threads, ffmpeg, spool, chain and stop event, so one broken camera (a dead URL,
    a refused key, a full disk) never stalls or stops another; a camera whose config cannot be used is
    logged and skipped.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    agents: list[Agent] = []
    for config in configs:
        try:
            agents.append(Agent.build(config, threading.Event()))
        except Exception as exc:                 # one camera's bad config must not stop the others
            log.error("camera %s is not started: %s", config.client_id, exc)
    if not agents:
        raise ConfigError("no camera could be started; see the errors above")

    def run_one(agent: Agent) -> None:
        try:
            agent.run(install_signals=False)
        except Exception as exc:
            log.error("camera %s stopped: %s", agent.config.client_id, exc)

    threads = [threading.Thread(target=run_one, args=(a,), name=f"agent-{a.config.client_id}") for a in agents]
    for t in threads:
        t.start()
    while not stop.wait(0.5) and any(t.is_alive() for t in threads):
        pass
    for agent in agents:
        agent.stop.set()
    for t in threads:
        t.join()
