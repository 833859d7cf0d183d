"""The finishing loop: close each recorded clip, decide whether to keep it, describe it, seal it, spool it.

It runs beside the capture loop so that encoding tails, sealing and fsyncs never hold up the camera. One
thread, one queue, clips in capture order: sequence numbers are handed out here, in that order, and only to
clips that are kept (``motion_only`` discards take none, so the chain has no gaps for them).

Before sealing, a clip-metadata box (:func:`cryospy.common.clipmeta.encode_meta_box`) is appended to the
MP4: the motion summary, the agent version, frames, duration, rate, size, the settings ETag and why the
clip was kept. Sealed with the video, it is as private and as tamper-evident as the pictures.

The loop ends when the recorder says it is done (:meth:`ClipFinisher.close_input`), not on the stop event,
so that the clip SIGTERM cut short is still sealed. Plaintext is deleted on every path, including the
clips held for ``motion_only`` pre-context at shutdown.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cryospy import __version__
from cryospy.common.clipmeta import ClipMetaError, encode_meta_box
from cryospy.common.ffmpeg_tool import FfmpegError
from cryospy.common.objectkeys import clip_key, legacy_clip_key
from cryospy.common.sealed import seal
from cryospy.common.timefmt import utc_stamp

from .motion import MotionSummary
from .motion_context import ContextKeeper
from .recorded import ClipPlan, RecordedClip, SourceGap, StreamInfo
from .spool import Spool, SpoolEntry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FinishedClip:
    """An encoded clip in the scratch directory, waiting to be kept or discarded."""

    plain: Path
    plan: ClipPlan
    captured_at: datetime
    duration_s: float
    frames: int
    summary: MotionSummary | None
    motion_error: str | None
    stream: StreamInfo
    source_gap: SourceGap | None = None


_stamp = utc_stamp


def clip_metadata(clip: FinishedClip, kept_for: str) -> dict[str, Any]:
    """The JSON that travels sealed inside the clip (see the module docstring)."""
    stream = clip.stream
    meta = {
        "agent_version": __version__, "captured_at": _stamp(clip.captured_at), "frames": clip.frames,
        "duration_s": round(clip.duration_s, 3), "fps": stream.fps, "width": stream.width, "height": stream.height,
        "codec": stream.codec, "audio": stream.audio, "record_mode": clip.plan.mode,
        "settings_etag": clip.plan.etag, "motion": clip.summary.to_dict() if clip.summary else None,
        "motion_error": clip.motion_error, "kept_for": kept_for,
    }
    if clip.source_gap is not None:
        meta["source_gap"] = clip.source_gap.to_dict()
    return meta


class ClipFinisher:
    def __init__(self, device_id: str, spool: Spool, signer: Ed25519PrivateKey,
                 on_sealed: Callable[[SpoolEntry], None] = lambda e: None, queue_size: int = 2,
                 storage_token: Callable[[], str] = lambda: "") -> None:
        self.device_id = device_id
        self.storage_token = storage_token   # the pseudonym keys and headers carry instead of device_id
        self.spool = spool
        self.signer = signer
        self.on_sealed = on_sealed
        # Small on purpose: if sealing falls behind (a slow SD card), capture slows down instead of
        # plaintext piling up in the scratch directory.
        self._queue: queue.Queue[RecordedClip | None] = queue.Queue(maxsize=queue_size)
        self.keeper: ContextKeeper[FinishedClip] = ContextKeeper()
        self.sealed = 0
        self.discarded = 0
        self._unsent_gap: SourceGap | None = None

    def submit(self, clip: RecordedClip) -> None:
        self._queue.put(clip)

    def close_input(self) -> None:
        """No more clips: run() finishes what is queued, then returns."""
        self._queue.put(None)

    def run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                try:
                    self.finish(item)
                except Exception:
                    log.exception("a recorded clip could not be finished and is lost")
        finally:
            for held in self.keeper.release_all():
                held.plain.unlink(missing_ok=True)

    def finish(self, recorded: RecordedClip) -> list[SpoolEntry]:
        """Close, decide, seal; returns the spool entries written (none, this clip, or it with its context)."""
        try:
            encoded = recorded.file.close()
        except FfmpegError as exc:
            log.error("the clip captured %s is lost: the encoder failed: %s", recorded.captured_at, exc)
            return []
        clip = FinishedClip(encoded.path, recorded.plan, recorded.captured_at, encoded.duration_s, encoded.frames,
                            recorded.summary, recorded.motion_error, encoded.stream, recorded.source_gap)
        settings = clip.plan.settings
        decision = self.keeper.decide(clip, motion_only=clip.plan.motion_only, pre_s=settings.motion_pre_seconds,
                                      post_s=settings.motion_post_seconds)
        for gone in decision.discard:
            if gone.source_gap is not None:
                self._unsent_gap = self._unsent_gap or gone.source_gap   # told with the next clip kept
            gone.plain.unlink(missing_ok=True)
            self.discarded += 1
            log.info("motion_only: discarded the quiet clip captured %s", _stamp(gone.captured_at))
        entries = []
        try:
            for kept, reason in decision.keep:
                entries.append(self._seal(kept, reason))
        finally:
            for kept, _ in decision.keep:
                kept.plain.unlink(missing_ok=True)
        return entries

    def _seal(self, clip: FinishedClip, kept_for: str) -> SpoolEntry:
        if self._unsent_gap is not None and clip.source_gap is None:
            clip = replace(clip, source_gap=self._unsent_gap)
        meta = clip_metadata(clip, kept_for)
        try:
            box = encode_meta_box(meta)
        except ClipMetaError:
            meta["motion"] = {**meta["motion"], "intervals": meta["motion"]["intervals"][:100]}
            box = encode_meta_box(meta)
        with open(clip.plain, "ab") as fh:
            fh.write(box)
        sequence, prev_hash = self.spool.chain_state()
        owner = self.storage_token()
        if owner:
            key = clip_key(owner, clip.captured_at, sequence)
        else:   # no token from the server, its cached settings or the config: kept here, refused for upload
            owner = self.device_id
            key = legacy_clip_key(owner, clip.captured_at, sequence)
            log.error("clip #%d is sealed under the camera's name: this agent has not learnt its storage token "
                      "(no settings from the server since enrolment or the upgrade, none in the config). The "
                      "server refuses such uploads; the clip stays in the spool's rejected/ folder. Put "
                      "storage_token in the config (the admin page shows it) or let the agent reach the server",
                      sequence)
        tmp = self.spool.temp_path(sequence)
        try:
            with open(clip.plain, "rb") as src, open(tmp, "wb") as dst:
                header = seal(src, dst, object_key=key.key, device_id=owner, sequence=sequence,
                              captured_at=key.captured_at, content_type="video/mp4", prev_hash=prev_hash,
                              recipient=clip.plan.recipient, signer=self.signer)
            motion = clip.summary is not None and clip.summary.motion
            entry = self.spool.commit(sequence, key.key, _stamp(key.captured_at), clip.duration_s, motion,
                                      clip.summary.to_dict() if clip.summary else None, clip.motion_error is not None)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.spool.save_chain_state(sequence + 1, header.header_hash)
        self.sealed += 1
        self._unsent_gap = None
        log.info("sealed clip #%d (%.1fs, %s, %d bytes)", sequence, clip.duration_s,
                 "motion" if motion else kept_for, entry.size)
        self.on_sealed(entry)
        return entry
