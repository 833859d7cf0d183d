"""MQTT with Home Assistant discovery (paho-mqtt 2.x, its own network thread).

Topics (``<p>`` = ``topic_prefix``, ``<cam>`` = :func:`camera_slug`; the full layout is in docs/mqtt.md)::

    <p>/status                  "online" / "offline"   retained; "offline" is also the last will
    <p>/status/<runtime>        the same, per runtime, when several runtimes share a database (below)
    <p>/<cam>/motion            "ON" / "OFF"           retained
    <p>/<cam>/connectivity      "ON" / "OFF"           retained (what the camera's agent reports)
    <p>/<cam>/storage_bytes     integer                retained
    <p>/<cam>/last_clip         ISO 8601 UTC           retained
    <p>/<cam>/events            JSON of every event    not retained
    <discovery>/binary_sensor|sensor/<node_id>/<cam>_<entity>/config    retained HA discovery

The channel keeps the last state of every camera in memory and publishes all of it, with the discovery
configs, each time it (re)connects: a broker or Home Assistant restarted meanwhile catches up, and events
that could not be published while the broker was away still leave the state topics right. A deleted camera's
discovery configs and state topics are cleared with empty retained messages, which makes Home Assistant
remove its entities.

Several runtimes sharing one database (docs/scale-out.md) share the channel settings, so each would connect
with the same client id, and a broker disconnects a client when another connects with its id: the two would
knock each other off for ever. And one runtime's last will would mark every camera unavailable while the other
runs on. So with an :class:`Instance` each runtime connects as ``cryospy-<node_id>-<tag>``, keeps its own status
topic, and the discovery configs list every runtime's status topic with ``availability_mode: any``: Home
Assistant shows the cameras available while any runtime is connected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import paho.mqtt.client as paho

from cryospy.common.timefmt import utc_now

from .errors import ChannelError
from .event import HomeEvent
from .settings import MqttSettings

log = logging.getLogger(__name__)
ENTITIES = (  # (component, entity, state topic leaf, config extras)
    ("binary_sensor", "motion", "motion", {"device_class": "motion", "payload_on": "ON", "payload_off": "OFF"}),
    ("binary_sensor", "connectivity", "connectivity",
     {"device_class": "connectivity", "payload_on": "ON", "payload_off": "OFF", "entity_category": "diagnostic"}),
    ("sensor", "storage", "storage_bytes", {"device_class": "data_size", "unit_of_measurement": "B",
                                            "state_class": "measurement", "entity_category": "diagnostic"}),
    ("sensor", "last_clip", "last_clip", {"device_class": "timestamp"}),
)
NAMES = {"motion": "Motion", "connectivity": "Camera connection", "storage": "Storage used",
         "last_clip": "Last clip"}
RECONNECT_MAX_S = 10  # paho retries a lost broker after 1, 2, 4, 8, 10, 10 … s
MAX_QUEUED = 10_000   # paho's own outgoing queue; past it a publish fails and the hub retries later
MAX_INFLIGHT = 200    # QoS 1 messages awaiting the broker's ack (paho's default of 20 throttles bursts)


def camera_slug(camera: str) -> str:
    """The camera's id as a topic level: lower case, [a-z0-9_-]; ids that needed changing get a short hash so
    that two ids never share topics ("Front Door" and "front_door" differ). Stable: a pure function of the id."""
    slug = re.sub(r"[^a-z0-9_-]", "_", camera.lower())
    if slug != camera:
        slug += "_" + hashlib.sha256(camera.encode()).hexdigest()[:6]
    return slug


@dataclass
class CameraState:
    motion: str | None = None            # "ON" / "OFF"
    connectivity: str | None = None
    storage_bytes: int | None = None
    last_clip: str | None = None

    def topics(self) -> dict[str, str]:
        values = {"motion": self.motion, "connectivity": self.connectivity,
                  "storage_bytes": None if self.storage_bytes is None else str(self.storage_bytes),
                  "last_clip": self.last_clip}
        return {leaf: v for leaf, v in values.items() if v is not None}


@dataclass(frozen=True)
class Instance:
    """This runtime among several that share one database: ``tag`` is its short, stable id (a hash of its name,
    which names a host and a folder the broker need not learn), ``peers`` gives every runtime's tag (the runtime
    registry; this one's is added if missing)."""
    tag: str
    peers: Callable[[], list[str]]

    @staticmethod
    def tag_of(runtime_name: str) -> str:
        return hashlib.sha256(runtime_name.encode()).hexdigest()[:8]

    def everyone(self) -> list[str]:
        try:
            peers = set(self.peers())
        except Exception as exc:   # the database briefly away: announce this runtime at least
            log.info("runtime list for MQTT availability unavailable: %s", exc)
            peers = set()
        return sorted(peers | {self.tag})


@dataclass
class _Link:
    connected: bool = False
    problem: str = "not connected yet"
    problem_at: str = field(default_factory=utc_now)


class MqttChannel:
    name = "mqtt"

    def __init__(self, settings: MqttSettings, cameras: Callable[[], dict[str, CameraState]],
                 instance: Instance | None = None) -> None:
        """``cameras`` gives the enrolled cameras with what the index knows (storage, last clip) at connect;
        ``instance``: this runtime's identity when several share the deployment (None: the only one)."""
        self.settings = settings
        self.instance = instance
        self.cameras = cameras
        self._lock = threading.RLock()
        self._state: dict[str, CameraState] = {}
        self._announced: set[str] = set()
        self._link = _Link()
        self._closing = False
        s = settings
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=paho.MQTTv311)
        if s.username:
            self.client.username_pw_set(s.username, s.password or None)
        if s.tls:
            self.client.tls_set(ca_certs=s.ca_file or None)
        self.client.will_set(self.status_topic, "offline", qos=1, retain=True)
        self.client.reconnect_delay_set(1, RECONNECT_MAX_S)
        self.client.max_queued_messages_set(MAX_QUEUED)
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def topic(self, *levels: str) -> str:
        return "/".join((self.settings.topic_prefix, *levels))

    @property
    def client_id(self) -> str:
        base = f"cryospy-{self.settings.node_id}"
        return f"{base}-{self.instance.tag}" if self.instance else base

    @property
    def status_topic(self) -> str:
        """Where this runtime says online/offline (its last will too)."""
        return self.topic("status", self.instance.tag) if self.instance else self.topic("status")

    def availability(self) -> dict[str, object]:
        """The discovery config's availability: this runtime's status topic, or every runtime's with "any"."""
        words = {"payload_available": "online", "payload_not_available": "offline"}
        if self.instance is None:
            return {"availability_topic": self.status_topic, **words}
        return {"availability": [{"topic": self.topic("status", tag), **words} for tag in self.instance.everyone()],
                "availability_mode": "any"}

    def discovery_topic(self, component: str, camera: str, entity: str) -> str:
        s = self.settings
        return f"{s.discovery_prefix}/{component}/{s.node_id}/{camera_slug(camera)}_{entity}/config"

    def unique_id(self, camera: str, entity: str) -> str:
        return f"{self.settings.node_id}_{camera_slug(camera)}_{entity}"

    # -- paho callbacks (its network thread) ---------------------------------------------------------
    def _on_connect(self, client: paho.Client, _userdata: object, _flags: object, reason: object,
                    _props: object = None) -> None:
        if getattr(reason, "is_failure", False):
            hint = " (check channels.mqtt.username and password)" if "user name" in str(reason).lower() or \
                "authori" in str(reason).lower() else ""
            self._problem(f"the broker at {self.where} refused the connection: {reason}{hint}")
            return
        with self._lock:
            self._link = _Link(True, "", utc_now())
            self._announced.clear()
            try:
                known = self.cameras()
            except Exception as exc:    # the index may be locked: announce what we have
                log.info("camera list for MQTT discovery incomplete: %s", exc)
                known = {}
            for camera, state in known.items():
                mine = self._state.setdefault(camera, CameraState())
                mine.storage_bytes = state.storage_bytes if mine.storage_bytes is None else mine.storage_bytes
                mine.connectivity = mine.connectivity or state.connectivity   # presence's, after a restart
                mine.last_clip = mine.last_clip or state.last_clip
            client.publish(self.status_topic, "online", qos=1, retain=True)
            for camera in list(self._state):
                self._announce(camera)
                for leaf, value in self._state[camera].topics().items():
                    client.publish(self.topic(camera_slug(camera), leaf), value, qos=1, retain=True)
        log.info("connected to the MQTT broker at %s", self.where)

    def _on_connect_fail(self, _client: paho.Client, _userdata: object) -> None:
        # paho does not hand over the cause; name everything it can be.
        tls = ", or the TLS handshake failed (check tls and ca_file)" if self.settings.tls else ""
        self._problem(f"cannot connect to the MQTT broker at {self.where}: refused or timed out{tls}; retrying")

    def _on_disconnect(self, _client: paho.Client, _userdata: object, _flags: object, reason: object,
                       _props: object = None) -> None:
        if self._link.connected and not self._closing:
            self._problem(f"lost the connection to the MQTT broker at {self.where}: {reason}; reconnecting")

    def _problem(self, text: str) -> None:
        with self._lock:
            if self._link.problem != text or self._link.connected:
                log.warning("%s", text)
            self._link = _Link(False, text, utc_now())

    # -- the Channel interface -----------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        self.client.loop_start()

    def health(self) -> tuple[bool, str, str]:
        link = self._link
        return link.connected, link.problem, link.problem_at

    def deliver(self, event: HomeEvent) -> None:
        with self._lock:
            changed = self._apply(event)
            if not self._link.connected:
                raise ChannelError(f"not connected to the MQTT broker at {self.where}: {self._link.problem}")
            if event.kind == "camera_removed":
                self._clear(event.camera)
                return
            if event.kind != "test":
                self._announce(event.camera)
            for leaf, value in changed.items():
                self._publish(self.topic(camera_slug(event.camera), leaf), value, qos=1, retain=True)
            self._publish(self.topic(camera_slug(event.camera), "events"), json.dumps(event.payload()), qos=0)

    def close(self) -> None:
        self._closing = True
        try:
            if self._link.connected:
                self.client.publish(self.status_topic, "offline", qos=1, retain=True).wait_for_publish(2)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()

    # -- state ---------------------------------------------------------------------------------------
    def _apply(self, event: HomeEvent) -> dict[str, str]:
        """Update the cached state; returns the state topics (leaf -> value) that changed."""
        if event.kind == "test":
            return {}
        if event.kind == "camera_added":
            self._state.setdefault(event.camera, CameraState())
            return {}
        if event.kind == "camera_removed":
            self._state.pop(event.camera, None)
            return {}
        state = self._state.setdefault(event.camera, CameraState())
        before = state.topics()
        if event.kind == "motion_start":
            state.motion = "ON"
        elif event.kind == "motion_end":
            state.motion = "OFF"
        elif event.kind == "camera_online":
            state.connectivity = "ON"
        elif event.kind == "camera_offline":
            state.connectivity = "OFF"
        elif event.kind == "clip_stored":
            if event.stored_bytes is not None:
                state.storage_bytes = event.stored_bytes
            if event.last_clip_at and (state.last_clip or "") < event.last_clip_at:
                state.last_clip = event.last_clip_at
        after = state.topics()
        return {leaf: v for leaf, v in after.items() if before.get(leaf) != v}

    def _announce(self, camera: str) -> None:
        if camera in self._announced:
            return
        slug = camera_slug(camera)
        device = {"identifiers": [f"{self.settings.node_id}_{slug}"], "name": f"CryoSpy {camera}",
                  "manufacturer": "CryoSpy", "model": "Camera"}
        for component, entity, leaf, extra in ENTITIES:
            # No object_id: Home Assistant deprecated it; entity ids follow from the device and entity names.
            config = {"name": NAMES[entity], "unique_id": self.unique_id(camera, entity),
                      "state_topic": self.topic(slug, leaf), **self.availability(), "device": device, **extra}
            self._publish(self.discovery_topic(component, camera, entity), json.dumps(config), qos=1, retain=True)
        self._announced.add(camera)

    def _clear(self, camera: str) -> None:
        for component, entity, leaf, _ in ENTITIES:
            self._publish(self.discovery_topic(component, camera, entity), "", qos=1, retain=True)
            self._publish(self.topic(camera_slug(camera), leaf), "", qos=1, retain=True)
        self._announced.discard(camera)

    def _publish(self, topic: str, payload: str, qos: int, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise ChannelError(f"could not publish to the MQTT broker at {self.where}: {paho.error_string(info.rc)}")
