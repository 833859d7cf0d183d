"""Real-time events on real parts: a real runtime and MinIO, Debian's mosquitto (tests/mqtt_broker.py), a real
edge agent in front of a synthetic camera, a webhook receiver and an SMTP server in this process.

* motion in front of the camera -> motion ON on the broker (latency printed);
* Home Assistant discovery retained, unique ids stable across a runtime restart, cleared on delete;
* the broker away for 30 s while events happen -> the state topics are right once it is back, the queue
  stayed bounded, nothing crashed;
* a wrong broker password, an unreachable push endpoint and a webhook receiver answering 500 -> clear errors
  on the admin status page, retries with backoff, e-mail unaffected; "send test event" works;
* the webhook's signature verifies with the recipe in docs/home-events.md (run from the doc itself).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.edge_agent.api_client import ApiClient
from cryospy.edge_agent.config import load_config
from cryospy.functions.channels import parse_channels
from cryospy.functions.channels.event import HomeEvent
from cryospy.functions.channels.mqtt import Instance, MqttChannel, camera_slug
from cryospy.infra.deployment import Deployment
from cryospy.infra.minio_server import free_port
from cryospy.infra.runtime import Runtime
from cryospy.infra.server_config import ServerConfig
from tests.integration.test_device_enrolment import TINY, RunningAgent
from tests.integration.test_storage_hardening import login
from tests.mqtt_broker import Broker, Subscriber, retained
from tests.smtp_sink import SmtpSink
from tests.support import agent_process, unlocked_runtime, wait_for

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[2] / "docs" / "home-events.md"


class Receiver:
    """A webhook receiver on loopback: keeps (headers, body, monotonic time) and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[Any, bytes, float]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append((self.headers, body, time.monotonic()))   # case-insensitive names
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def channels_runtime(deployment: Deployment, channels: dict[str, Any],
                     smtp: SmtpSink | None = None, offline_after_seconds: float = 60) -> Iterator[Runtime]:
    config = ServerConfig(smtp=smtp.settings() if smtp else None,
                          alert_recipients=("owner@test.invalid",) if smtp else (),
                          channels=parse_channels(channels, smtp_ready=smtp is not None), channels_doc=channels,
                          offline_after_seconds=offline_after_seconds)
    with unlocked_runtime(deployment, config) as rt:
        yield rt


def enrol(deployment: Deployment, tmp_path: Path, prefix: str) -> tuple[str, Path]:
    device_id = f"{prefix}-{uuid.uuid4().hex[:6]}"
    path = tmp_path / f"{device_id}.json"
    create_device(deployment, device_id, path, {**TINY, "temp_dir": str(tmp_path)}, agent_generates_key=True)
    return device_id, path


def post_events(config_path: Path, *events: dict[str, Any]) -> None:
    ApiClient(load_config(config_path)).post_events(list(events))


def stamp() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def channel_row(page: str, name: str) -> str:
    match = re.search(rf'<tr data-channel="{name}">(.*?)</tr>', page, re.S)
    assert match, f"no row for channel {name} on the status page"
    return match.group(1)


def test_motion_in_front_of_a_camera_turns_motion_on_on_the_broker(deployment, minio, mqtt_broker: Broker,
                                                                   tmp_path: Path) -> None:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    sub = Subscriber(mqtt_broker, f"{prefix}/#")
    with channels_runtime(deployment, {"mqtt": mqtt_broker.settings(topic_prefix=prefix)}):
        device_id, config_path = enrol(deployment, tmp_path, "motion-cam")
        # The synthetic 160x96 scene's moving object is about 19x19 pixels: below the default blob filters.
        AdminClient(deployment.api_url, deployment.admin_token).call(
            "PATCH", f"/v1/admin/devices/{device_id}/settings",
            {"motion_min_area": 100, "motion_min_width": 5, "motion_min_height": 5})
        topic = f"{prefix}/{camera_slug(device_id)}"
        running = RunningAgent(config_path)
        try:
            wait_for(lambda: sub.last(f"{topic}/motion") == "ON", 60, "motion ON on the broker")
            wait_for(lambda: sub.last(f"{topic}/connectivity") == "ON", 10, "connectivity ON")
        finally:
            running.stop()
        assert running.error is None
        wait_for(lambda: sub.last(f"{topic}/connectivity") == "OFF", 10, "offline when the agent stops")
        assert sub.last(f"{topic}/motion") == "OFF"
    start = next(json.loads(m[1]) for m in sub.on(f"{topic}/events") if '"motion_start"' in m[1])
    assert start["camera"] == device_id and 0 < start["score"] <= 1 and start["id"]
    onset = datetime.fromisoformat(start["at"].replace("Z", "+00:00")).timestamp()
    arrived = next(wall for t, p, _, wall in sub.walls if t == f"{topic}/motion" and p == "ON")
    latency = arrived - onset
    print(f"motion onset -> MQTT motion ON: {latency:.3f} s (motion_min_seconds 0.5 included)")
    assert 0.4 < latency < 0.5 + 1.0
    events = [json.loads(m[1]) for m in sub.on(f"{topic}/events")]
    assert {"motion_start", "motion_end", "camera_online", "camera_offline"} <= {e["kind"] for e in events}
    assert not any(k in json.dumps(events) for k in ("secret", "clips/", "key")), "ids and times only"
    sub.close()


def test_the_channel_uses_tls_with_the_brokers_ca_and_refuses_an_unknown_one(mqtt_broker: Broker) -> None:
    good = parse_channels({"mqtt": mqtt_broker.settings(port=mqtt_broker.tls_port, tls=True,
                                                        ca_file=str(mqtt_broker.ca_file), node_id="tls-ok")},
                          smtp_ready=False).mqtt
    bad = parse_channels({"mqtt": mqtt_broker.settings(port=mqtt_broker.tls_port, tls=True, node_id="tls-bad")},
                         smtp_ready=False).mqtt       # the system trust store does not know the test CA
    assert good and bad
    channels = [MqttChannel(good, dict), MqttChannel(bad, dict)]
    for channel in channels:
        channel.start()
    try:
        wait_for(lambda: channels[0].health()[0], 10, "connected over TLS")
        wait_for(lambda: "TLS handshake failed" in channels[1].health()[1], 10, "an unknown CA refused")
        assert not channels[1].health()[0]
    finally:
        for channel in channels:
            channel.close()


def test_discovery_is_retained_stable_across_restarts_and_cleared_on_delete(deployment, minio, mqtt_broker: Broker,
                                                                             tmp_path: Path) -> None:
    node = f"n{uuid.uuid4().hex[:8]}"
    settings = mqtt_broker.settings(node_id=node, topic_prefix=node)
    device_id = f"Porch Cam-{uuid.uuid4().hex[:6]}"
    slug = camera_slug(device_id)

    def discovery() -> dict[str, str]:
        return {t: p for t, p in retained(mqtt_broker, f"homeassistant/+/{node}/#", 0.5).items()
                if t.split("/")[3].startswith(f"{slug}_")}

    with channels_runtime(deployment, {"mqtt": settings}):
        AdminClient(deployment.api_url, deployment.admin_token).call("POST", "/v1/admin/devices",
                                                                     {"device_id": device_id})
        first = wait_for(lambda: (r := discovery()) and len(r) == 4 and r, 15, "four discovery configs")
    configs = {t: json.loads(p) for t, p in first.items()}
    assert {c["unique_id"] for c in configs.values()} == {f"{node}_{slug}_{e}" for e in
                                                          ("motion", "connectivity", "storage", "last_clip")}
    motion = configs[f"homeassistant/binary_sensor/{node}/{slug}_motion/config"]
    assert motion["device_class"] == "motion" and motion["state_topic"] == f"{node}/{slug}/motion"
    assert motion["availability_topic"] == f"{node}/status" and motion["device"]["identifiers"] == [f"{node}_{slug}"]
    storage = configs[f"homeassistant/sensor/{node}/{slug}_storage/config"]
    assert storage["device_class"] == "data_size" and storage["unit_of_measurement"] == "B"
    assert retained(mqtt_broker, f"{node}/status", 0.5) == {f"{node}/status": "offline"}, "the runtime stopped"

    # Wipe the broker's copies: a restarted runtime must announce the same entities again by itself.
    wipe = Subscriber(mqtt_broker, "unused/#")
    for topic in first:
        wipe.client.publish(topic, "", qos=1, retain=True).wait_for_publish(5)
    wipe.close()
    assert discovery() == {}
    with channels_runtime(deployment, {"mqtt": settings}):
        again = wait_for(lambda: (r := discovery()) and len(r) == 4 and r, 15, "discovery after a restart")
        assert again == first, "same topics, same unique ids, same configs"
        assert retained(mqtt_broker, f"{node}/status", 0.5) == {f"{node}/status": "online"}
        AdminClient(deployment.api_url, deployment.admin_token).call(
            "DELETE", f"/v1/admin/devices/{requests.utils.quote(device_id)}?clips=delete")
        wait_for(lambda: discovery() == {}, 15, "discovery cleared on delete")
        assert retained(mqtt_broker, f"{node}/{slug}/#", 0.5) == {}, "state topics cleared too"


def test_a_broker_outage_leaves_state_right_and_the_queue_bounded(deployment, minio, mqtt_broker: Broker,
                                                                  tmp_path: Path) -> None:
    prefix = f"o{uuid.uuid4().hex[:8]}"
    settings = mqtt_broker.settings(topic_prefix=prefix, node_id=prefix, queue_size=50, max_attempts=1000)
    with channels_runtime(deployment, {"mqtt": settings}) as rt:
        device_id, config_path = enrol(deployment, tmp_path, "outage-cam")
        topic = f"{prefix}/{camera_slug(device_id)}"
        post_events(config_path, {"kind": "camera_online", "at": stamp()})
        wait_for(lambda: retained(mqtt_broker, f"{topic}/connectivity", 0.3) == {f"{topic}/connectivity": "ON"},
                 10, "online before the outage")
        mqtt_broker.stop()
        try:
            wait_for(lambda: rt.services.home_events.status()[0].state == "error", 15, "the outage noticed")
            t_end = time.monotonic() + 30
            n = 0
            while time.monotonic() < t_end:
                post_events(config_path, {"kind": "motion_start", "at": stamp(), "id": f"m{n}", "score": 0.2},
                            {"kind": "motion_end", "at": stamp(), "id": f"m{n}", "score": 0.2})
                n += 1
                time.sleep(0.2)
            post_events(config_path, {"kind": "camera_offline", "at": stamp(), "detail": "lost: unplugged"},
                        {"kind": "motion_start", "at": stamp(), "id": "last", "score": 0.4})
            status = rt.services.home_events.status()[0]
            assert status.queued <= 50 and status.dropped > 0, status
            assert "MQTT broker" in status.last_error
            assert requests.get(deployment.api_url + "/v1/health", timeout=5).ok, "the runtime serves on"
        finally:
            mqtt_broker.start()
        want = {f"{topic}/motion": "ON", f"{topic}/connectivity": "OFF"}
        wait_for(lambda: {k: v for k, v in retained(mqtt_broker, f"{topic}/#", 0.5).items() if k in want} == want,
                 40, "state topics right once the broker is back")
        wait_for(lambda: rt.services.home_events.status()[0].state == "connected", 10, "connected again")
        assert retained(mqtt_broker, f"{prefix}/status", 0.5) == {f"{prefix}/status": "online"}


def test_failing_channels_show_clear_errors_retry_and_leave_email_alone(deployment, minio, mqtt_broker: Broker,
                                                                         tmp_path: Path) -> None:
    receiver = Receiver(status=500)
    dead_port = free_port()
    channels = {
        "mqtt": mqtt_broker.settings(password="not-the-password", node_id=f"w{uuid.uuid4().hex[:6]}"),
        "push": {"enabled": True, "url": f"http://127.0.0.1:{dead_port}/cryospy", "retry_max_seconds": 4},
        "webhook": {"enabled": True, "url": receiver.url, "secret": "s" * 32, "retry_max_seconds": 4},
        "email": {"enabled": True, "kinds": ["motion_start"]},
    }
    try:
        with SmtpSink() as smtp, channels_runtime(deployment, channels, smtp) as rt:
            device_id, config_path = enrol(deployment, tmp_path, "failing")
            post_events(config_path, {"kind": "motion_start", "at": stamp(), "id": "f1", "score": 0.3})
            wait_for(lambda: smtp.messages, 10, "the motion mail, despite three failing channels")
            assert device_id in smtp.messages[0].get_content()
            wait_for(lambda: len(receiver.requests) >= 3, 15, "the webhook retried")
            gaps = [b[2] - a[2] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
            assert gaps[0] == pytest.approx(1, abs=0.5) and gaps[1] == pytest.approx(2, abs=0.5), gaps

            web = login(deployment.runtime_url)
            page = web.get(deployment.runtime_url + "/admin/status", timeout=10).text
            assert "refused the connection: Not authorized (check channels.mqtt.username and password)" in \
                channel_row(page, "mqtt")
            push = channel_row(page, "push")
            assert f"cannot reach the push endpoint at http://127.0.0.1:{dead_port}/cryospy" in push
            assert "retrying" in push
            assert f"webhook receiver at {receiver.url} answered HTTP 500" in channel_row(page, "webhook")
            email = channel_row(page, "email")
            assert "channel-state ok" in email and "not-the-password" not in page and "s" * 32 not in page

            csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)   # type: ignore[union-attr]
            assert web.post(deployment.runtime_url + "/admin/status/test", data={"channel": "email"},
                            timeout=10, allow_redirects=False).status_code == 403, "no CSRF token, no test"
            sent = web.post(deployment.runtime_url + "/admin/status/test", data={"channel": "email", "csrf": csrf},
                            timeout=10, allow_redirects=False)
            assert sent.status_code in (302, 303)
            wait_for(lambda: any("test event" in m.get_content() for m in smtp.messages), 10, "the test mail")
            assert rt.services.home_events.status()[0].name == "email"
    finally:
        receiver.close()


def test_the_webhook_signature_verifies_with_the_documented_recipe(deployment, minio, tmp_path: Path) -> None:
    receiver = Receiver(status=204)
    secret = "a webhook secret for the test suite"
    recipe = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert recipe, "docs/home-events.md holds the verification recipe"
    namespace: dict[str, Any] = {}
    exec(recipe.group(1), namespace)   # the documented recipe, exactly as a receiver would paste it
    verify = namespace["verify_cryospy_webhook"]
    try:
        with channels_runtime(deployment, {"webhook": {"enabled": True, "url": receiver.url, "secret": secret}}):
            _, config_path = enrol(deployment, tmp_path, "signed")
            post_events(config_path, {"kind": "motion_start", "at": stamp(), "id": "s1", "score": 0.5})
            wait_for(lambda: any(b'"motion_start"' in r[1] for r in receiver.requests), 10, "the signed webhook")
        headers, body, _ = next(r for r in receiver.requests if b'"motion_start"' in r[1])
        ts, sig = headers["X-CryoSpy-Timestamp"], headers["X-CryoSpy-Signature"]
        assert verify(secret.encode(), ts, sig, body) is None
        with pytest.raises(ValueError, match="signature"):
            verify(secret.encode(), ts, sig, body.replace(b"0.5", b"0.9"))
        with pytest.raises(ValueError, match="timestamp"):
            verify(secret.encode(), ts, sig, body, now=int(ts) + 301)
        with pytest.raises(ValueError, match="signature"):
            verify(b"another secret", ts, sig, body)
        assert json.loads(body)["kind"] == "motion_start"
    finally:
        receiver.close()


def _csrf(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)   # type: ignore[union-attr]


def _card(page: str, name: str) -> str:
    match = re.search(rf'<section class="card channel-card" data-channel="{name}">(.*?)</section>', page, re.S)
    assert match, f"no card for channel {name} on the channels page"
    return match.group(1)


def test_mqtt_switched_on_from_the_dashboard_publishes_on_the_broker_without_a_restart(
        deployment, minio, mqtt_broker: Broker, tmp_path: Path) -> None:
    prefix = f"d{uuid.uuid4().hex[:8]}"
    sealed = deployment.path("runtime", "channels.sealed")
    base = deployment.runtime_url
    form = {"enabled": "on", "host": "127.0.0.1", "port": str(mqtt_broker.port), "username": "cryospy",
            "password": "broker-test-password"}
    try:
        with channels_runtime(deployment, {}) as rt:
            assert rt.services.home_events.names == []
            web = login(base)
            page = web.get(base + "/admin/channels", timeout=10).text
            assert "What leaves the house: To the broker: camera ids" in _card(page, "mqtt")
            assert "no picture ever leaves the house" in _card(page, "email")
            csrf = _csrf(page)
            assert web.post(base + "/admin/channels/mqtt", data=form, timeout=10,
                            allow_redirects=False).status_code == 403, "no CSRF token, no change"
            bad = web.post(base + "/admin/channels/mqtt", data={**form, "port": "eighty", "csrf": csrf}, timeout=10)
            assert bad.status_code == 400
            assert "channels.mqtt.port must be a number from 1 to 65535, got &#39;eighty&#39;" in \
                _card(bad.text, "mqtt")
            assert "broker-test-password" not in bad.text, "a typed secret is not sent back"
            assert not sealed.exists() and rt.services.home_events.names == [], "a refused form changes nothing"
            big = web.post(base + "/admin/channels/mqtt", data={**form, "csrf": csrf, "host": "h" * 300}, timeout=10)
            assert big.status_code == 400 and "channels.mqtt.host must be a non-empty string" in big.text
            assert web.post(base + "/admin/channels/nope", data={"csrf": csrf}, timeout=10).status_code == 404

            sub = Subscriber(mqtt_broker, f"{prefix}/#")
            # topic_prefix is not on the form: the rest of the section is kept, so the test may set it first.
            rt.channels.update("mqtt", {"enabled": False, "topic_prefix": prefix, "node_id": prefix})
            saved = web.post(base + "/admin/channels/mqtt", data={**form, "csrf": csrf}, timeout=10,
                             allow_redirects=False)
            assert saved.status_code in (302, 303) and saved.headers["Location"].endswith("/admin/channels?saved=mqtt")
            wait_for(lambda: sub.last(f"{prefix}/status") == "online", 15, "the runtime online on the broker")
            device_id, config_path = enrol(deployment, tmp_path, "dash-cam")
            post_events(config_path, {"kind": "motion_start", "at": stamp(), "id": "d1", "score": 0.3})
            topic = f"{prefix}/{camera_slug(device_id)}"
            wait_for(lambda: sub.last(f"{topic}/motion") == "ON", 10, "motion ON through the dashboard's channel")

            page = web.get(base + "/admin/channels", timeout=10).text
            card = _card(page, "mqtt")
            assert "broker-test-password" not in page and "A password is set (encrypted at rest)." in card
            assert f'value="{mqtt_broker.port}"' in card and "Settings from dashboard." in card
            assert b"broker-test-password" not in sealed.read_bytes() and b"127.0.0.1" not in sealed.read_bytes()
            assert sealed.stat().st_mode & 0o777 == 0o600

            # Saving again with the password field empty keeps the password (the broker still lets it in).
            web.post(base + "/admin/channels/mqtt", data={**form, "password": "", "csrf": csrf}, timeout=10)
            wait_for(lambda: rt.services.home_events.status()[0].state == "connected", 15, "connected again")
            status = web.get(base + "/admin/status", timeout=10).text
            sent = web.post(base + "/admin/status/test", data={"channel": "mqtt", "csrf": _csrf(status)}, timeout=10,
                            allow_redirects=False)
            assert sent.status_code in (302, 303)
            wait_for(lambda: any('"test"' in m[1] for m in sub.on(f"{prefix}/test/events")), 10, "the test event")

        # A restarted runtime reads the sealed settings at unlock: MQTT is on without server.json saying so.
        with channels_runtime(deployment, {}) as rt:
            wait_for(lambda: rt.services.home_events.names == ["mqtt"], 10, "the saved channel after a restart")
            wait_for(lambda: retained(mqtt_broker, f"{prefix}/status", 0.3) == {f"{prefix}/status": "online"}, 15,
                     "online after the restart")
            web = login(base)
            csrf = _csrf(web.get(base + "/admin/channels", timeout=10).text)
            web.post(base + "/admin/channels/mqtt", data={**form, "enabled": "", "csrf": csrf}, timeout=10)
            assert rt.services.home_events.names == []
            wait_for(lambda: retained(mqtt_broker, f"{prefix}/status", 0.3) == {f"{prefix}/status": "offline"}, 10,
                     "switched off from the dashboard: the runtime says offline")
        sub.close()
    finally:
        sealed.unlink(missing_ok=True)


def test_a_killed_agent_turns_its_camera_offline_and_back_online(deployment, minio, mqtt_broker: Broker,
                                                                 tmp_path: Path) -> None:
    prefix = f"k{uuid.uuid4().hex[:8]}"
    receiver = Receiver(status=204)
    channels = {"mqtt": mqtt_broker.settings(topic_prefix=prefix, node_id=prefix),
                "webhook": {"enabled": True, "url": receiver.url, "secret": "k" * 32}}
    offline_after = 15
    try:
        with channels_runtime(deployment, channels, offline_after_seconds=offline_after):
            device_id, config_path = enrol(deployment, tmp_path, "killed")
            topic = f"{prefix}/{camera_slug(device_id)}"
            sub = Subscriber(mqtt_broker, f"{topic}/#")
            proc = agent_process(config_path, tmp_path / "agent.log")
            try:
                wait_for(lambda: sub.last(f"{topic}/connectivity") == "ON", 60, "the agent's camera online")
                # Alive for longer than offline_after: its held long-polls keep it in touch.
                time.sleep(offline_after + 6)
                assert sub.last(f"{topic}/connectivity") == "ON", "a live agent is never declared offline"
                proc.kill()                      # SIGKILL: no goodbye
                proc.wait(10)
                killed = time.monotonic()
                wait_for(lambda: sub.last(f"{topic}/connectivity") == "OFF", offline_after + 20 + 30,
                         "connectivity OFF after the agent fell silent")
                print(f"SIGKILL -> MQTT connectivity OFF: {time.monotonic() - killed:.1f} s "
                      f"(offline_after_seconds {offline_after}, long-poll hold 20 s)")
                assert retained(mqtt_broker, f"{topic}/connectivity", 0.3) == {f"{topic}/connectivity": "OFF"}
                offline = [json.loads(m[1]) for m in sub.on(f"{topic}/events") if '"camera_offline"' in m[1]]
                assert offline[-1]["detail"] == f"no contact from the agent for {offline_after} s"
                wait_for(lambda: any(b'"camera_offline"' in r[1] and device_id.encode() in r[1]
                                     for r in receiver.requests), 10, "the webhook told as well")
            finally:
                if proc.poll() is None:
                    proc.kill()
            proc = agent_process(config_path, tmp_path / "agent.log")
            try:
                wait_for(lambda: sub.last(f"{topic}/connectivity") == "ON", 60, "online again when it is back")
            finally:
                proc.terminate()
                proc.wait(30)
            wait_for(lambda: sub.last(f"{topic}/connectivity") == "OFF", 15, "offline on a clean stop")
            sub.close()
    finally:
        receiver.close()



def test_two_runtimes_share_the_mqtt_settings_without_knocking_each_other_off(mqtt_broker: Broker) -> None:
    """Runtimes sharing a database share the channel settings (docs/scale-out.md). Each connects with a client id
    of its own (one id would make the broker drop the older client at every reconnect), says online/offline on
    its own status topic, and the discovery configs name both topics with availability_mode "any": the cameras
    stay available in Home Assistant while one runtime is stopped."""
    node = f"two{uuid.uuid4().hex[:6]}"
    settings = parse_channels({"mqtt": mqtt_broker.settings(node_id=node, topic_prefix=node)}, smtp_ready=False).mqtt
    assert settings
    tags = [Instance.tag_of("host-a:/var/lib/cryospy"), Instance.tag_of("host-b:/var/lib/cryospy-b")]
    a, b = (MqttChannel(settings, dict, Instance(tag, lambda: list(tags))) for tag in tags)
    a.start()
    wait_for(lambda: a.health()[0], 10, "runtime A connected")
    b.start()
    try:
        wait_for(lambda: b.health()[0], 10, "runtime B connected")
        b.deliver(HomeEvent(camera="yard", kind="motion_start", at=stamp()))
        wait_for(lambda: retained(mqtt_broker, f"{node}/yard/motion", 0.3) == {f"{node}/yard/motion": "ON"}, 10,
                 "motion from runtime B")
        time.sleep(2)   # a broker that took B's id for A's would have dropped A by now
        assert a.health()[0] and b.health()[0], "both clients stay connected"
        config = json.loads(retained(mqtt_broker, f"homeassistant/binary_sensor/{node}/yard_motion/config", 0.5)
                            [f"homeassistant/binary_sensor/{node}/yard_motion/config"])
        assert config["availability_mode"] == "any"
        assert sorted(t["topic"] for t in config["availability"]) == sorted(f"{node}/status/{t}" for t in tags)
        assert "availability_topic" not in config
        a.close()
        status = retained(mqtt_broker, f"{node}/status/#", 0.5)
        assert status == {f"{node}/status/{tags[0]}": "offline", f"{node}/status/{tags[1]}": "online"}
    finally:
        a.close()
        b.close()
