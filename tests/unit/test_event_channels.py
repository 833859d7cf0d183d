"""Real-time events without a network: the agent's reporter (motion runs, camera state, clips, bounded queue),
the server's parser, the channels' strict settings, the webhook signature recipe and the hub's isolation,
limits and retries (fake channels)."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cryospy.edge_agent.api_client import Retryable
from cryospy.edge_agent.live_events import QUIET_S, EventReporter
from cryospy.edge_agent.spool import SpoolEntry
from cryospy.functions.channels import ChannelError, ChannelHub, HomeEvent, SignatureError, parse_device_events
from cryospy.functions.channels.errors import ChannelSettingsError
from cryospy.functions.channels.mqtt import camera_slug
from cryospy.functions.channels.settings import Delivery, parse_channels
from cryospy.functions.channels.webhook import sign, verify_signature
from cryospy.functions.errors import BadRequest
from cryospy.infra.server_config import ServerConfigError, load_server_config
from tests.support import wait_for

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClient:
    def __init__(self) -> None:
        self.posted: list[list[dict[str, Any]]] = []
        self.down = False

    def post_events(self, events: list[dict[str, Any]]) -> None:
        if self.down:
            raise Retryable("server down")
        self.posted.append(list(events))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t

    def utc(self) -> datetime:
        return T0 + timedelta(seconds=self.t - 100.0)


def reporter(state: dict[str, str], queue_size: int = 1000) -> tuple[EventReporter, FakeClient, Clock]:
    client, clock = FakeClient(), Clock()
    rep = EventReporter(client, threading.Event(), source_state=lambda: state["source"],  # type: ignore[arg-type]
                        motion_state=lambda: state["motion"], min_seconds=lambda: 0.5, queue_size=queue_size,
                        monotonic=clock, utc=clock.utc)
    return rep, client, clock


def kinds(rep: EventReporter) -> list[str]:
    return [e["kind"] for e in rep.queue]


def test_motion_start_waits_for_the_minimum_duration_and_ends_after_a_quiet_spell() -> None:
    rep, _, clock = reporter({"source": "starting", "motion": "ok"})
    rep.moving(0.1)
    clock.t += 0.3
    rep.moving(0.3)
    assert kinds(rep) == [], "shorter than motion_min_seconds: not motion yet"
    clock.t += 0.3
    rep.moving(0.2)
    assert kinds(rep) == ["motion_start"]
    start = rep.queue[0]
    assert start["at"] == "2026-01-01T12:00:00.000Z" and start["score"] == 0.3, "onset time, peak so far"
    clock.t += QUIET_S - 0.1
    rep.tick()
    assert kinds(rep) == ["motion_start"], "not quiet long enough"
    clock.t += 0.2
    rep.tick()
    end = rep.queue[1]
    assert end["kind"] == "motion_end" and end["id"] == start["id"] and end["duration_s"] == pytest.approx(0.6)
    # A single noisy frame later never becomes an event.
    clock.t += 10
    rep.moving(0.9)
    clock.t += 10
    rep.tick()
    assert kinds(rep) == ["motion_start", "motion_end"]
    # A run that went quiet before the loop ticked is still ended when the next one starts.
    rep.moving(0.4)
    clock.t += 0.5
    rep.moving(0.4)
    clock.t += QUIET_S + 1
    rep.moving(0.5)
    assert kinds(rep) == ["motion_start", "motion_end", "motion_start", "motion_end"]


def test_the_clip_a_motion_run_belongs_to_is_named_once_sealed() -> None:
    rep, _, clock = reporter({"source": "ok", "motion": "ok"})
    rep.moving(0.2)
    clock.t += 1
    rep.moving(0.2)
    motion_id = rep.queue[0]["id"]

    def entry(seq: int, start: datetime) -> SpoolEntry:
        stamp = start.isoformat().replace("+00:00", "Z")
        return SpoolEntry(seq, "k", stamp, 1, "00", 10.0, True)

    rep.clip_sealed(entry(7, T0 - timedelta(seconds=5)))      # covers the onset
    rep.clip_sealed(entry(6, T0 - timedelta(seconds=30)))     # long before: not this run
    clips = [e for e in rep.queue if e["kind"] == "motion_clip"]
    assert [(c["id"], c["clip_sequence"]) for c in clips] == [(motion_id, 7)]


def test_camera_state_changes_are_reported_once_each() -> None:
    state = {"source": "starting", "motion": "ok"}
    rep, _, _ = reporter(state)
    rep.tick()
    assert kinds(rep) == [], "starting says nothing yet"
    state["source"] = "ok"
    rep.tick()
    rep.tick()
    state["source"] = "lost: camera went away; retrying in 2s"
    rep.tick()
    state["motion"] = "error: OpenCV failed"
    rep.tick()
    rep.tick()
    state.update(source="ok", motion="ok")
    rep.tick()
    assert kinds(rep) == ["camera_online", "camera_offline", "source_problem", "camera_online"]
    assert rep.queue[1]["detail"].startswith("lost: camera went away")


def test_the_queue_is_bounded_and_waits_for_the_server() -> None:
    state = {"source": "ok", "motion": "ok"}
    rep, client, _ = reporter(state, queue_size=5)
    client.down = True
    for i in range(12):
        state["source"] = "ok" if i % 2 else "lost: x"
        rep.tick()
    assert len(rep.queue) == 5 and rep.dropped == 7
    with pytest.raises(Retryable):
        rep.flush()
    assert len(rep.queue) == 5, "nothing is lost while the server is away"
    client.down = False
    rep.flush()
    assert len(rep.queue) == 0 and len(client.posted[0]) == 5


def test_the_reporter_loop_posts_promptly_and_never_blocks_the_caller() -> None:
    client = FakeClient()
    stop = threading.Event()
    rep = EventReporter(client, stop, source_state=lambda: "ok", motion_state=lambda: "ok",  # type: ignore[arg-type]
                        min_seconds=lambda: 0.0)
    thread = threading.Thread(target=rep.run)
    thread.start()
    try:
        wait_for(lambda: client.posted, 5, "camera_online posted")
        t = time.monotonic()
        rep.moving(0.5)
        assert time.monotonic() - t < 0.01
        wait_for(lambda: any(e["kind"] == "motion_start" for b in client.posted for e in b), 2, "motion_start")
        assert time.monotonic() - t < 0.5
    finally:
        stop.set()
        thread.join(5)


# -- the server's side --------------------------------------------------------------------------------------
def test_device_events_are_parsed_strictly() -> None:
    events = parse_device_events("cam", {"events": [
        {"kind": "motion_start", "at": "2026-01-01T12:00:00.5+00:00", "id": "a1", "score": 0.25},
        {"kind": "camera_offline", "at": "2026-01-01T12:00:01Z", "detail": "lost"}]})
    assert events[0] == HomeEvent("cam", "motion_start", "2026-01-01T12:00:00.500Z", "a1", 0.25)
    assert events[1].payload() == {"camera": "cam", "kind": "camera_offline", "at": "2026-01-01T12:00:01.000Z",
                                   "detail": "lost"}
    bad = [({"events": [{"kind": "clip_stored", "at": "2026-01-01T12:00:01Z"}]}, "events[0].kind"),
           ({"events": [{"kind": "motion_start", "at": "yesterday"}]}, "events[0].at"),
           ({"events": [{"kind": "motion_start", "at": "2026-01-01T12:00:01"}]}, "events[0].at"),
           ({"events": [{"kind": "motion_start", "at": "2026-01-01T12:00:01Z", "score": 2}]}, "events[0].score"),
           ({"events": [{"kind": "motion_start", "at": "2026-01-01T12:00:01Z", "camera": "x"}]}, "events[0].camera"),
           ({"events": [{}] * 101}, "events"), ({"events": "x"}, "events"), ({"event": []}, "event")]
    for doc, field in bad:
        with pytest.raises(BadRequest) as err:
            parse_device_events("cam", doc)
        assert err.value.field == field, doc


def test_channel_settings_are_strict() -> None:
    ok = parse_channels({"mqtt": {"enabled": True, "host": "broker.lan"}, "push": {"enabled": False}},
                        smtp_ready=False)
    assert list(ok.delivery) == ["mqtt"] and ok.mqtt and ok.mqtt.port == 1883 and ok.push is None
    assert parse_channels({"mqtt": {"enabled": True, "host": "b", "tls": True}}, smtp_ready=False).mqtt.port == 8883
    cases = [
        ({"mqtt": {"enabled": True, "host": "b", "pasword": "x"}}, "did you mean 'password'"),
        ({"mqqt": {}}, "did you mean 'mqtt'"),
        ({"mqtt": {"enabled": True, "host": "b", "port": 70000}}, "port must be a number from 1 to 65535"),
        ({"mqtt": {"enabled": True, "host": "b", "topic_prefix": "home/#"}}, "no MQTT wildcards"),
        ({"mqtt": {"enabled": True, "host": "b", "password": "p"}}, "username must be set"),
        ({"webhook": {"enabled": True, "url": "https://h/x", "secret": "short"}}, "at least 16 characters"),
        ({"webhook": {"enabled": True, "url": "ftp://h/x", "secret": "s" * 16}}, "http:// or https://"),
        ({"push": {"enabled": True, "url": "https://ntfy/x", "kinds": ["motion"]}}, "kinds must be a list"),
        ({"push": {"enabled": True, "url": "https://ntfy/x", "queue_size": 0}}, "queue_size must be"),
        ({"email": {"enabled": True}}, "smtp or alerts.recipients is not set"),
        ({"email": {"enabled": "yes"}}, "enabled must be true or false"),
    ]
    for doc, message in cases:
        with pytest.raises(ChannelSettingsError, match=message):
            parse_channels(doc, smtp_ready=False)


def test_server_json_takes_channels_and_refuses_bad_ones(tmp_path: Path) -> None:
    path = tmp_path / "server.json"
    path.write_text(json.dumps({"channels": {"webhook": {"enabled": True, "url": "http://127.0.0.1:9/h",
                                                         "secret": "0123456789abcdef"}}}))
    assert load_server_config(path).channels.webhook is not None
    path.write_text(json.dumps({"channels": {"webhook": {"enabled": True, "url": "http://h/h", "secret": "x"}}}))
    with pytest.raises(ServerConfigError, match=r"server\.json: channels\.webhook\.secret"):
        load_server_config(path)


def test_webhook_signature_recipe() -> None:
    secret, body, ts = "0123456789abcdef0123", b'{"camera":"cam","kind":"motion_start"}', 1_767_225_600
    signature = sign(secret, ts, body)
    verify_signature(secret, str(ts), signature, body, now=ts + 10)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature(secret, str(ts), signature, body.replace(b"cam", b"car"), now=ts)
    with pytest.raises(SignatureError, match="does not match"):
        verify_signature("another secret of length", str(ts), signature, body, now=ts)
    with pytest.raises(SignatureError, match="more than 300 s"):
        verify_signature(secret, str(ts), signature, body, now=ts + 301)
    with pytest.raises(SignatureError, match="not a number"):
        verify_signature(secret, "soon", signature, body, now=ts)


def test_camera_slugs_are_stable_topic_levels() -> None:
    assert camera_slug("front-door") == "front-door"
    odd = camera_slug("Front Door+2")
    assert odd == camera_slug("Front Door+2") and odd.startswith("front_door_2_")
    assert camera_slug("front_door") != camera_slug("Front Door")
    assert set(odd) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")


# -- the hub ------------------------------------------------------------------------------------------------
class FakeChannel:
    def __init__(self, name: str, fail_times: int = 0, block: threading.Event | None = None) -> None:
        self.name, self.fail_times, self.block = name, fail_times, block
        self.got: list[HomeEvent] = []
        self.attempts: list[float] = []

    def start(self) -> None: ...

    def health(self) -> None:
        return None

    def deliver(self, event: HomeEvent) -> None:
        self.attempts.append(time.monotonic())
        if self.block is not None:
            self.block.wait(10)
        if self.fail_times:
            self.fail_times -= 1
            raise ChannelError("receiver answered HTTP 500")
        self.got.append(event)

    def close(self) -> None: ...


def delivery(**kw: Any) -> Delivery:
    base = {"kinds": ("motion_start", "motion_end", "camera_offline"), "min_interval_s": 0.0, "queue_size": 100,
            "retry_max_s": 2.0, "max_attempts": 5}
    return Delivery(**{**base, **kw})


def ev(kind: str = "motion_start", camera: str = "cam") -> HomeEvent:
    return HomeEvent(camera, kind, "2026-01-01T12:00:00.000Z")


def test_a_failing_channel_retries_with_backoff_and_never_delays_another() -> None:
    failing, healthy = FakeChannel("webhook", fail_times=2), FakeChannel("push")
    hub = ChannelHub([(failing, delivery()), (healthy, delivery())])
    hub.start()
    try:
        hub.publish([ev()])
        wait_for(lambda: healthy.got, 2, "the healthy channel delivers at once")
        status = {s.name: s for s in hub.status()}
        assert status["webhook"].state == "retrying" and "HTTP 500" in status["webhook"].last_error
        assert status["push"].state == "ok"
        wait_for(lambda: failing.got, 10, "the failing channel delivers after its retries")
        gaps = [b - a for a, b in zip(failing.attempts, failing.attempts[1:], strict=False)]
        assert gaps[0] == pytest.approx(1.0, abs=0.3) and gaps[1] == pytest.approx(2.0, abs=0.3), "1 s, then 2 s"
        assert {s.name: s.state for s in hub.status()}["webhook"] == "ok"
    finally:
        hub.close()


def test_queues_are_bounded_limits_are_per_camera_and_kind_and_tests_go_through() -> None:
    gate = threading.Event()
    slow = FakeChannel("push", block=gate)
    hub = ChannelHub([(slow, delivery(queue_size=3, min_interval_s=60.0))])
    hub.start()
    try:
        hub.publish([ev("motion_start", "a"), ev("motion_start", "a"), ev("motion_start", "b"),
                     ev("camera_offline", "a"), ev("clip_stored", "a")])       # not in kinds
        for cam in "cdefg":
            hub.publish([ev("motion_start", cam)])
        hub.send_test("push")
        status = hub.status()[0]
        assert status.rate_limited == 1, "the second motion_start of camera a within a minute"
        assert status.queued <= 3 and status.dropped >= 4
        gate.set()
        wait_for(lambda: any(e.kind == "test" for e in slow.got), 5, "the test event")
        with pytest.raises(KeyError):
            hub.send_test("mqtt")
    finally:
        gate.set()
        hub.close()


def test_a_channel_gives_up_after_max_attempts_and_keeps_the_error() -> None:
    failing = FakeChannel("webhook", fail_times=100)
    hub = ChannelHub([(failing, delivery(max_attempts=2))])
    hub.start()
    try:
        hub.publish([ev()])
        wait_for(lambda: hub.status()[0].dropped == 1, 5, "dropped after two attempts")
        status = hub.status()[0]
        assert status.state == "error" and "HTTP 500" in status.last_error and len(failing.attempts) == 2
    finally:
        hub.close()


def test_changing_a_channel_keeps_its_undelivered_events() -> None:
    """The dashboard saves new settings for a channel while its receiver is down: the events still queued
    go to the channel's new settings first, in order, instead of being lost with the old worker."""
    down = FakeChannel("webhook", fail_times=100)
    other = FakeChannel("push", fail_times=100)
    hub = ChannelHub([(down, delivery(retry_max_s=0.2)), (other, delivery(retry_max_s=0.2))])
    hub.start()
    try:
        hub.publish([ev("motion_start", "a"), ev("motion_end", "a"), ev("camera_offline", "b")])
        wait_for(lambda: len(down.attempts) >= 2, 5, "the old webhook failing")
        fixed = FakeChannel("webhook")
        hub.replace_with(ChannelHub([(fixed, delivery(kinds=("motion_start", "motion_end")))]))
        hub.publish([ev("motion_start", "c")])
        wait_for(lambda: len(fixed.got) == 3, 5, "the queued events, then the new one")
        assert [(e.camera, e.kind) for e in fixed.got] == [("a", "motion_start"), ("a", "motion_end"),
                                                           ("c", "motion_start")], "kinds it no longer sends stay out"
        assert hub.names == ["webhook"], "push was switched off; its queue went with it"
    finally:
        hub.close()
