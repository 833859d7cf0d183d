"""Issue #12, findings 1 and 2: nobody can switch a camera off by failing to log in as it, a page under another
name cannot reach the runtime (DNS rebinding), and one proxy rule decides who a client is.

The tests play the attacker against the real runtime and MinIO and assert the safe outcome; the legitimate
camera or admin must get through in every one of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cryospy.infra.server_config import ServerConfig
from tests.attack_support import BEHIND_PROXY, basic, call, guess, login, serving, xff
from tests.conftest import PASSPHRASE
from tests.smtp_sink import SmtpSink
from tests.support import FakeCamera, wait_for

pytestmark = pytest.mark.integration


# -- finding 1: no kill switch; the Host header is checked -------------------------------------------------

def test_wrong_secrets_for_a_camera_name_never_switch_it_off(deployment, minio, tmp_path: Path):
    with SmtpSink() as smtp:
        config = ServerConfig(smtp=smtp.settings(), alert_recipients=("owner@test.invalid",))
        with serving(deployment, config) as rt:
            camera = FakeCamera(deployment, "porch-kill", tmp_path)
            answers = [guess(deployment, "porch-kill") for _ in range(30)]
            assert set(answers) == {401, 429} and answers[:19] == [401] * 19   # the source is throttled ...
            assert rt.services.devices.get("porch-kill").enabled                # ... the camera is not
            # It still uploads from the very address the attacker was blocked under: the right secret always works.
            key = camera.upload()
            head = rt.services.handler_client.head_object(Bucket=deployment.bucket, Key=key)
            assert head["ContentLength"] == len(camera.last_upload)
            mail = wait_for(lambda: smtp.messages, what="the auth-failure mail")[0]
    text = mail.get_content()
    assert mail["Subject"] == "CryoSpy repeated authentication failures detected"
    assert "Device: porch-kill" in text and "127.0.0.1" in text and "disabled" not in text


def test_a_page_under_another_name_cannot_reach_the_runtime(deployment, minio, tmp_path: Path):
    """DNS rebinding: a web page on attacker.example re-points its name at the runtime; the browser then sends
    ``Host: attacker.example``. Every route the browser could reach refuses it before doing anything."""
    port = deployment.runtime_port
    evil = {"Host": f"attacker.example:{port}"}
    with serving(deployment) as rt:
        FakeCamera(deployment, "rebound", tmp_path)
        for method, path in (("GET", "/v1/device/settings"), ("GET", "/login"), ("POST", "/login"), ("GET", "/"),
                             ("GET", "/health"), ("POST", "/v1/admin/devices")):
            status, _, body = call(method, deployment.runtime_url + path, b"" if method == "POST" else None,
                                   {**evil, **basic("rebound", "00" * 32)})
            assert status == 421 and b"allowed_hosts" in body, (method, path, status, body[:200])
        snapshot = rt.services.defence.snapshot()
        assert not snapshot["devices"] and not snapshot["ips"]                # nothing was even counted
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1"):
            assert call("GET", deployment.runtime_url + "/login", headers={"Host": host})[0] == 200, host


# -- finding 2: one proxy rule for the device API and the dashboard ----------------------------------------

def test_behind_a_proxy_one_attacker_does_not_throttle_other_cameras(deployment, minio):
    with serving(deployment, BEHIND_PROXY) as rt:
        answers = [guess(deployment, "nobody", **xff("203.0.113.66")) for _ in range(22)]
        assert answers[-1] == 429
        # Another client behind the same proxy is judged on its own.
        assert guess(deployment, "nobody", **xff("203.0.113.7")) == 401
        counted = {row["ip"]: row["failures"] for row in rt.services.defence.snapshot()["ips"]}
    assert counted == {"203.0.113.66": 20, "203.0.113.7": 1}


def test_x_real_ip_cannot_choose_the_address_a_client_is_counted_under(deployment, minio):
    # The proxy appends the real client to X-Forwarded-For and passes the client's own X-Real-IP through.
    with serving(deployment, BEHIND_PROXY) as rt:
        for _ in range(25):
            guess(deployment, "nobody", **{"X-Real-IP": "203.0.113.8", **xff("203.0.113.67")})
        assert guess(deployment, "nobody", **xff("203.0.113.8")) == 401    # the framed neighbour is not blocked
        counted = {row["ip"] for row in rt.services.defence.snapshot()["ips"]}
    assert counted == {"203.0.113.67", "203.0.113.8"}


def test_without_a_trusted_proxy_forwarded_headers_are_ignored(deployment, minio):
    with serving(deployment) as rt:
        answers = [guess(deployment, "nobody", **{"X-Real-IP": f"198.51.100.{i}", **xff(f"198.51.100.{i}")})
                   for i in range(22)]
        assert answers[-1] == 429                 # rotating the headers does not escape the limit
        assert [row["ip"] for row in rt.services.defence.snapshot()["ips"]] == ["127.0.0.1"]


def test_dashboard_logins_follow_the_same_proxy_rule(deployment, minio):
    with serving(deployment, BEHIND_PROXY):
        answers = [login(deployment, "wrong guess", **xff("203.0.113.66"))[0] for _ in range(6)]
        assert answers == [401] * 5 + [429]
        status, headers, _ = login(deployment, PASSPHRASE, **xff("203.0.113.7"))
        assert status == 302 and "cryospy_session=" in headers.get("Set-Cookie", "")
