"""Two runtimes share what they learn about devices (issue 18 item 4, docs/postgres.md): real runtimes in child
processes on one PostgreSQL and one MinIO, each with its MQTT channel on Debian's mosquitto under a topic prefix
of its own, so the tests see which runtime published what.

Presence: the camera's first request goes to runtime B, then it heartbeats to runtime A only, for longer than
``offline_after_seconds``: runtime B publishes no ``camera_offline`` (each runtime's own presence would have:
B hears nothing more) and its admin API lists the camera with A's last contact and heartbeat. Then the camera
falls silent: exactly one ``camera_offline`` across both runtimes; it comes back (talking to both): exactly
one ``camera_online``.

Budgets: upload slots asked of both runtimes in turn come out of one budget per camera, and failed logins
spread over both runtimes block the address on both, while the camera's right secret, from that very
address, still gets in."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from cryospy.cli.admin_client import AdminClient
from cryospy.edge_agent.api_client import ApiClient, Retryable, Slot
from cryospy.functions.channels import parse_channels
from cryospy.functions.channels.mqtt import camera_slug
from cryospy.infra.deployment import Deployment, load
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime_instances import add_runtime
from tests.conftest import new_deployment
from tests.mqtt_broker import Broker, Subscriber
from tests.runtime_process import RuntimeProcess
from tests.support import FakeCamera, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
OFFLINE_AFTER = 15      # the least allowed; the presence check runs every 3.75 s
SLOTS_PER_MINUTE = 4
ADDRESS_LIMIT = 6       # failed logins per address and window
CAMERA = "porch cam"


def _overrides(broker: Broker, prefix: str) -> dict[str, Any]:
    """Each runtime's settings: its MQTT channel, and small limits so that the test reaches them."""
    channels = {"mqtt": broker.settings(topic_prefix=prefix, node_id=prefix)}
    return {"channels": parse_channels(channels, smtp_ready=False), "channels_doc": channels,
            "offline_after_seconds": OFFLINE_AFTER, "slots_per_minute": SLOTS_PER_MINUTE,
            "auth_events": {"unknown_id_limit_per_ip": ADDRESS_LIMIT, "notification_threshold": 0}}


def _events(sub: Subscriber, topic: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in (json.loads(m[1]) for m in sub.on(topic)) if doc.get("kind") == kind]


@dataclass
class Pair:
    main: Deployment
    second: Deployment
    prefixes: dict[str, str]
    subs: dict[str, Subscriber]


@pytest.fixture(scope="module")
def pair(postgres, minio_binary: Path, mqtt_broker: Broker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Runtimes A and B on one PostgreSQL and one MinIO, each publishing to MQTT under a prefix of its own."""
    tmp = tmp_path_factory.mktemp("two-runtimes")
    main = new_deployment(tmp / "runtime-a")
    (main.data_dir / "server.json").write_text(json.dumps({"database_url": postgres.fresh_url()}))
    second = add_runtime(main, tmp / "runtime-b", free_port())
    main = load(main.data_dir)
    tag = f"p{uuid.uuid4().hex[:8]}"
    prefixes = {"A": f"{tag}a", "B": f"{tag}b"}
    subs = {name: Subscriber(mqtt_broker, f"{prefix}/#") for name, prefix in prefixes.items()}
    with MinioServer(main, binary=minio_binary):
        a, b = (RuntimeProcess(dep, overrides=_overrides(mqtt_broker, prefixes[name]))
                for dep, name in ((main, "A"), (second, "B")))
        try:
            yield Pair(main, second, prefixes, subs)
        finally:
            a.stop()
            b.stop()
            for sub in subs.values():
                sub.close()


def test_a_camera_heard_by_one_runtime_stays_online_on_the_other_and_each_change_is_published_once(
        pair: Pair, tmp_path: Path) -> None:
    main, second, prefixes, subs = pair.main, pair.second, pair.prefixes, pair.subs
    slug = camera_slug(CAMERA)

    def published(kind: str) -> dict[str, int]:
        return {name: len(_events(subs[name], f"{prefixes[name]}/{slug}/events", kind)) for name in prefixes}

    camera = FakeCamera(main, CAMERA, tmp_path / "cam")            # enrolled through runtime A
    to_a = camera.client
    to_b = ApiClient(replace(camera.config, server_url=second.runtime_url))
    admin_b = AdminClient(second.runtime_url, main.admin_token)

    # Its first request went to B (as a load balancer may send it), so B knows the camera; from then on
    # it is in touch with A only, for twice the limit (a heartbeat every 2 s, as a busy agent is).
    to_b.heartbeat({"agent_version": "test"})
    started = time.monotonic()
    beats = 0
    while time.monotonic() - started < 2 * OFFLINE_AFTER + 5:
        to_a.heartbeat({"agent_version": "test", "last_sequence": beats, "settings_etag": "e-test"})
        last_contact = time.monotonic()
        beats += 1
        time.sleep(2)
    listed = {d["device_id"]: d for d in admin_b.call("GET", "/v1/admin/devices")["devices"]}
    assert listed[CAMERA]["last_seen"] is not None, "B lists the contact the camera made with A"
    assert listed[CAMERA]["heartbeat"]["last_sequence"] == beats - 1, "and A's latest heartbeat"
    assert published("camera_offline") == {"A": 0, "B": 0}, "a camera in touch with A is not offline on B"

    # Silent: one runtime (either) publishes camera_offline, the other nothing.
    wait_for(lambda: sum(published("camera_offline").values()) >= 1, OFFLINE_AFTER + 30,
             "camera_offline after the camera fell silent")
    print(f"last contact -> camera_offline: {time.monotonic() - last_contact:.1f} s "
          f"(offline_after {OFFLINE_AFTER} s)")
    time.sleep(3 * 3.75)     # three more checks on each runtime: room for a second one to appear
    assert sum(published("camera_offline").values()) == 1, published("camera_offline")
    offline = next(e for name in prefixes
                   for e in _events(subs[name], f"{prefixes[name]}/{slug}/events", "camera_offline"))
    assert offline["detail"] == f"no contact from the agent for {OFFLINE_AFTER} s"

    # Back, talking to both runtimes at once: one camera_online across both.
    threads = [threading.Thread(target=client.heartbeat, args=({"agent_version": "test"},))
               for client in (to_a, to_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_for(lambda: sum(published("camera_online").values()) >= 1, 15, "camera_online when it is back")
    for _ in range(6):       # in touch with both for three checks more: nothing else is published
        to_a.heartbeat({"agent_version": "test"})
        to_b.heartbeat({"agent_version": "test"})
        time.sleep(2)
    assert sum(published("camera_online").values()) == 1, published("camera_online")
    assert sum(published("camera_offline").values()) == 1
    back = next(name for name, n in published("camera_online").items() if n)
    assert subs[back].last(f"{prefixes[back]}/{slug}/connectivity") == "ON"


def test_slot_budgets_and_failed_logins_are_counted_once_for_both_runtimes(pair: Pair, tmp_path: Path) -> None:
    main, second = pair.main, pair.second
    camera = FakeCamera(main, "gate cam", tmp_path / "gate")
    clients = [camera.client, ApiClient(replace(camera.config, server_url=second.runtime_url))]
    for n in range(SLOTS_PER_MINUTE):                 # A, B, A, B: one budget between them
        assert _slot(clients[n % 2], n).key
    for client in clients:
        with pytest.raises(Retryable, match="HTTP 429"):
            _slot(client, 9)

    # An attacker on this machine's address guesses the camera's secret, half on each runtime.
    wrong = ("Basic " + base64.b64encode(b"gate cam:" + b"00" * 32).decode())
    urls = [main.runtime_url, second.runtime_url]
    statuses = [_heartbeat(urls[n % 2], wrong) for n in range(ADDRESS_LIMIT)]
    assert statuses == [401] * ADDRESS_LIMIT
    assert [_heartbeat(url, wrong) for url in urls] == [429, 429], "blocked on both: one budget for the address"
    # The camera, from the same address, still gets in on either runtime: failures never lock it out.
    for client in clients:
        assert client.heartbeat({"agent_version": "test"})["ok"] is True


def _slot(client: ApiClient, sequence: int) -> Slot:
    return client.request_slot({"size": 64, "sha256": hashlib.sha256(b"clip").hexdigest(), "sequence": sequence,
                                "captured_at": f"2026-01-01T00:00:0{sequence}.000Z"})


def _heartbeat(base: str, authorization: str) -> int:
    req = urllib.request.Request(f"{base}/v1/device/heartbeat", data=b"{}", method="POST",
                                 headers={"Authorization": authorization, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
