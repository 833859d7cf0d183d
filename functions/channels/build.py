"""Build the hub from the ``channels`` settings (called once by the runtime at start)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .email import EmailChannel
from .hub import ChannelHub
from .mqtt import CameraState, Instance, MqttChannel
from .push import PushChannel
from .settings import ChannelsSettings
from .webhook import WebhookChannel


def build_hub(settings: ChannelsSettings, *, mailer: Any, recipients: Sequence[str],
              cameras: Callable[[], dict[str, CameraState]], instance: Instance | None = None) -> ChannelHub:
    """``instance``: this runtime's MQTT identity when several runtimes share the deployment (mqtt.Instance)."""
    made: dict[str, Any] = {}
    if settings.email:
        made["email"] = EmailChannel(mailer, recipients)
    if settings.mqtt is not None:
        made["mqtt"] = MqttChannel(settings.mqtt, cameras, instance)
    if settings.webhook is not None:
        made["webhook"] = WebhookChannel(settings.webhook)
    if settings.push is not None:
        made["push"] = PushChannel(settings.push)
    chosen = [(made[name], settings.delivery[name]) for name in ("email", "mqtt", "webhook", "push") if name in made]
    return ChannelHub(chosen, instance=instance)
