"""Records back-to-back clips, encodes them to fragmented MP4, seals them and hands them to the spool.

No frame is lost between clips: the next clip starts with the frame that follows the last one written. The
capture time of a clip is the UTC wall clock when its first frame arrived. Plaintext exists only in a 0600
file inside a private temporary directory for the seconds it takes to seal it, and is removed on every path.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.objectkeys import clip_key
from cryospy.common.sealed import seal

from .config import AgentConfig
from .encoder import ClipEncoder, EncodeSettings
from .errors import SourceError
from .sources import FrameSource
from .spool import Spool, SpoolEntry

log = logging.getLogger("cryospy.agent.recorder")


def _even(v: int) -> int:
    return max(16, v - (v % 2))


class Recorder:
    def __init__(self, config: AgentConfig, source_factory: Callable[[], FrameSource], spool: Spool,
                 recipient: DeploymentPublicKey, signer: Ed25519PrivateKey, stop: threading.Event,
                 on_clip: Callable[[SpoolEntry], None] = lambda e: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.config = config
        self.source_factory = source_factory
        self.spool = spool
        self.recipient = recipient
        self.signer = signer
        self.stop = stop
        self.on_clip = on_clip
        self.clock = clock
        self.source_state = "starting"
        self.clips = 0

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            try:
                source = self.source_factory()
            except SourceError as exc:
                self.source_state = f"unavailable: {exc}"
                log.warning("%s; retrying in %.0fs", exc, backoff)
                self.stop.wait(backoff)
                backoff = min(60.0, backoff * 2)
                continue
            self.source_state, backoff = "ok", 1.0
            try:
                while not self.stop.is_set():
                    self.record_clip(source)
            except SourceError as exc:
                self.source_state = f"lost: {exc}"
                log.warning("%s; reopening", exc)
            finally:
                source.close()

    def record_clip(self, source: FrameSource) -> SpoolEntry | None:
        fps = source.fps
        width = _even(self.config.width or source.width)
        height = _even(self.config.height or source.height)
        settings = EncodeSettings(width=width, height=height, fps=fps, crf=self.config.crf,
                                  keyframe_seconds=self.config.keyframe_seconds)
        frames_wanted = max(1, round(self.config.clip_seconds * fps))
        workdir = Path(tempfile.mkdtemp(prefix="cryospy-clip-"))  # mkdtemp: mode 0700, ours alone
        try:
            plain = workdir / "clip.mp4"
            first = source.read()
            captured_at = self.clock()
            with ClipEncoder(plain, settings) as encoder:
                encoder.write(first)
                while encoder.frames < frames_wanted and not self.stop.is_set():
                    encoder.write(source.read())
            clip = encoder.result
            assert clip is not None
            return self._seal(plain, captured_at, clip.duration_s)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _seal(self, plain: Path, captured_at: datetime, duration_s: float) -> SpoolEntry:
        sequence, prev_hash = self.spool.chain_state()
        key = clip_key(self.config.client_id, captured_at, sequence)
        tmp = self.spool.temp_path(sequence)
        with open(plain, "rb") as src, open(tmp, "wb") as dst:
            header = seal(src, dst, object_key=key.key, device_id=self.config.client_id, sequence=sequence,
                          captured_at=key.captured_at, content_type="video/mp4", prev_hash=prev_hash,
                          recipient=self.recipient, signer=self.signer)
        stamp = key.captured_at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        entry = self.spool.commit(sequence, key.key, stamp, duration_s, motion=False)
        self.spool.save_chain_state(sequence + 1, header.header_hash)
        self.clips += 1
        log.info("recorded clip #%d (%.1fs, %d bytes sealed)", sequence, duration_s, entry.size)
        self.on_clip(entry)
        return entry
