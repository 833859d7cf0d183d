"""Issue #12, findings 4 and 9: request bodies are capped per route family before they are read, and deeply
nested JSON is a 400, never a 500.

The tests play the attacker against the real runtime and MinIO and assert the safe outcome; the legitimate
camera or admin must get through in every one of them.
"""

from __future__ import annotations

import json
import select
import socket
from pathlib import Path

import pytest

from cryospy.infra.deployment import Deployment
from cryospy.web.server import MAX_FORM_BODY
from tests.attack_support import call
from tests.support import FakeCamera

pytestmark = pytest.mark.integration


# -- finding 4: bodies are capped per route family before they are read --------------------------------------

def _refused_before_the_body(dep: Deployment, request_head: str) -> bytes:
    """Send only the request head and return what the runtime answers without waiting for the body."""
    with socket.create_connection((dep.host, dep.runtime_port), timeout=10) as sock:
        sock.sendall(request_head.encode())
        sock.settimeout(5)
        return sock.recv(4096)


@pytest.mark.parametrize(("path", "length"), [("/login", 200 << 20), ("/setup", 64 << 10),
                                               ("/_minio/events", 2 << 20), ("/v1/device/slots", 1 << 20),
                                               ("/v1/admin/devices", 512 << 10)])
def test_oversized_bodies_are_refused_before_they_are_read(runtime, deployment, path, length):
    head = (f"POST {path} HTTP/1.1\r\nHost: {deployment.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n")
    answer = _refused_before_the_body(deployment, head)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_a_chunked_body_is_cut_off_at_the_cap(runtime, deployment):
    """Without a Content-Length the cap is counted as the chunks arrive; the answer comes long before 1 MiB."""
    with socket.create_connection((deployment.host, deployment.runtime_port), timeout=10) as sock:
        sock.sendall(f"POST /login HTTP/1.1\r\nHost: {deployment.host}\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/x-www-form-urlencoded\r\n\r\n".encode())
        chunk = b"2000\r\n" + b"a" * 0x2000 + b"\r\n"
        sent = 0
        while sent < 1 << 20 and not select.select([sock], [], [], 0.05)[0]:
            sock.sendall(chunk)
            sent += 0x2000
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413") and sent <= 2 * MAX_FORM_BODY, (sent, answer[:200])


# -- finding 9: deeply nested JSON is a 400 ------------------------------------------------------------------

def test_deeply_nested_json_is_a_bad_request_not_a_server_error(runtime, deployment, tmp_path: Path):
    camera = FakeCamera(deployment, "nested", tmp_path)
    deep = b"[" * 50_000 + b"]" * 50_000
    json_headers = {"Content-Type": "application/json"}
    calls = [
        ("/v1/device/heartbeat", {**camera.client._auth, **json_headers}, deep[:30_000] + deep[-30_000:]),
        ("/v1/admin/devices", {"Authorization": f"Bearer {deployment.admin_token}", **json_headers},
         b'{"device_id": ' + deep[:30_000] + deep[-30_000:] + b"}"),
        ("/_minio/events", {"Authorization": f"Bearer {deployment.webhook_token}", **json_headers},
         b'{"Records": ' + deep + b"}"),
    ]
    for path, headers, body in calls:
        status, _, raw = call("POST", deployment.runtime_url + path, body, headers)
        assert status == 400, (path, status, raw[:300])
        assert b"nest" in raw and b"Traceback" not in raw
    assert json.loads(call("GET", deployment.runtime_url + "/health")[2]) == {"status": "ok", "service": "cryospy"}
