"""The edge agent, top to bottom: one line per subsystem.

It starts and records even when the server is unreachable: nothing here needs the network before the
first clip, and clips wait in the spool. SIGTERM/SIGINT end the current clip early (it is sealed and kept),
make one last upload pass, and exit.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass

from cryospy.common.keys import DeploymentPublicKey, signing_key_from_text

from .api_client import ApiClient
from .config import AgentConfig
from .errors import ConfigError
from .recorder import Recorder
from .sources import open_source
from .spool import Spool
from .uploader import Uploader

log = logging.getLogger("cryospy.agent")


@dataclass
class Agent:
    config: AgentConfig
    stop: threading.Event
    spool: Spool
    recorder: Recorder
    uploader: Uploader

    @classmethod
    def build(cls, config: AgentConfig, stop: threading.Event | None = None) -> Agent:
        stop = stop or threading.Event()
        try:
            recipient = DeploymentPublicKey.from_text(config.deployment_public_key)
            signer = signing_key_from_text(config.signing_key)
        except Exception as exc:
            raise ConfigError(f"deployment_public_key or signing_key in the agent config is not valid: {exc}") from None
        wake = threading.Event()
        spool = Spool(config.spool_dir, config.spool_max_megabytes * 1024 * 1024)
        recorder = Recorder(
            config, lambda: open_source(config.camera_device, loop=config.loop, fps=config.fps,
                                        width=config.width, height=config.height),
            spool, recipient, signer, stop, on_clip=lambda _entry: wake.set())
        uploader = Uploader(config, spool, ApiClient(config), stop, wake)
        return cls(config, stop, spool, recorder, uploader)

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop.set())
        threads = [threading.Thread(target=self.recorder.run, name="recorder"),
                   threading.Thread(target=self.uploader.run, name="uploader")]
        for t in threads:
            t.start()
        log.info("agent %s running: source %s, spool %s", self.config.client_id, self.config.camera_device,
                 self.config.spool_dir)
        while not self.stop.wait(0.5):
            pass
        for t in threads:
            t.join()
        self.uploader.drain(timeout=self.config.server_timeout_seconds + 5)
        log.info("agent stopped; %d clip(s) left in the spool for next time", len(self.spool.entries()))
