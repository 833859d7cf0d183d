"""The recording plan: everything one clip is recorded with, decided once at the clip's first frame.

Why a separate, frozen object: settings can change while a clip is being recorded (the sync loop runs
beside the recorder), and a clip must be encoded, analysed, described and sealed with one consistent set of
values. The plan merges three sources, in this order of precedence: the agent config's local pins (see
:mod:`.config`), the server's device settings (synced or cached), and the camera's own frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryospy.common.keys import DeploymentPublicKey
from cryospy.common.settings import DeviceSettings

from .config import AgentConfig
from .encoder import EncodeSettings
from .settings_sync import SettingsSnapshot


def planned_fps(snapshot: SettingsSnapshot, config: AgentConfig) -> float:
    """The constant rate clips are encoded at: the config's pin, else the server's capture_frame_rate."""
    return float(config.fps or snapshot.settings.capture_frame_rate)


def _even(v: int) -> int:
    return max(16, v - (v % 2))


@dataclass(frozen=True)
class RecordingPlan:
    settings: DeviceSettings         # for the motion detector and motion_only
    etag: str
    recipient: DeploymentPublicKey
    clip_seconds: float
    fps: float                       # the constant rate the clip is encoded at
    encode: EncodeSettings
    frame_size: tuple[int, int]      # the camera's (width, height): what motion detection sees

    @property
    def frames_per_clip(self) -> int:
        return max(1, round(self.clip_seconds * self.fps))

    @property
    def motion_only(self) -> bool:
        return self.settings.motion_only

    @property
    def mode(self) -> str:
        return "transcode"

    @classmethod
    def build(cls, snapshot: SettingsSnapshot, config: AgentConfig, frame_size: tuple[int, int]) -> RecordingPlan:
        settings = snapshot.settings
        hints = settings.encode_settings()
        fps = planned_fps(snapshot, config)
        clip_seconds = float(config.clip_seconds or settings.clip_duration_seconds)
        if config.width and config.height:
            width, height = config.width, config.height
        elif hints.width and hints.height:
            width, height = hints.width, hints.height
        else:
            width, height = _even(frame_size[0]), _even(frame_size[1])
        keyframe = config.keyframe_seconds or hints.keyframe_seconds
        # A segment needs one frame and a clip whole segments; pins can combine with server values that break
        # either rule, so clamp rather than refuse to record.
        keyframe = min(max(keyframe, 1.0 / fps), clip_seconds)
        crf = config.crf if config.crf is not None else hints.crf
        encode = EncodeSettings(width=width, height=height, fps=fps, crf=crf, bitrate=hints.bitrate,
                                grayscale=hints.grayscale, keyframe_seconds=keyframe, preset=config.encoder_preset,
                                codec=hints.codec)
        return cls(settings, snapshot.etag, snapshot.recipient, clip_seconds, fps, encode, frame_size)

    def motion_key(self) -> tuple[object, ...]:
        """What the motion detector depends on: while it is unchanged, the detector (and its model) is kept."""
        s = self.settings
        return (self.frame_size, s.motion_detect_width, s.motion_mog_history, s.motion_mog_var_thresh,
                s.motion_warm_up_frames, s.motion_min_area, s.motion_min_width, s.motion_min_height,
                s.motion_min_aspect, s.motion_max_aspect, s.motion_zones, s.motion_masks, s.motion_min_seconds)
