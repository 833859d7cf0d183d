"""TLS as `cryospy setup` makes it, with the device API and the dashboard on listeners of their own.

One deployment for the module, set up with TLS on (the default) and ``dashboard_port`` set: a real MinIO with
the deployment's certificate (``--certs-dir``), a real runtime on two TLS listeners, a real edge agent with the
config `cryospy devices create` writes (the CA inside). Proven here: the agent uploads over TLS and the clip is
indexed, with MinIO's webhook verifying the runtime's certificate; an agent holding another CA refuses to talk
and says why; the dashboard sends HSTS and a Secure session cookie; plain HTTP on a TLS port is redirected or
refused, never served; each listener 404s the other's routes; the body caps still hold before a body is read.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cryospy.cli.admin_client import AdminClient
from cryospy.cli.devices import create_device
from cryospy.cli.setup_cmd import setup
from cryospy.edge_agent.api_client import ApiClient, ServerNotTrusted
from cryospy.edge_agent.config import parse_config
from cryospy.infra import certificates
from cryospy.infra.deployment import Deployment
from cryospy.infra.lan_address import find_lan_address
from cryospy.infra.minio_server import MinioServer, free_port
from cryospy.infra.runtime import Runtime
from cryospy.infra.webhook import MAX_BODY as WEBHOOK_MAX_BODY
from tests.conftest import FAST_SCRYPT_N, PASSPHRASE
from tests.support import RunningAgent, unlocked_runtime, wait_for

pytestmark = pytest.mark.integration

HOST = "127.0.0.1"
TINY = {"camera_device": "synthetic:160x96", "clip_seconds": 2, "fps": 10, "settings_sync_seconds": 5,
        "server_timeout_seconds": 5, "upload_retry_minutes": 0.05, "source_retry_max_seconds": 1}


@pytest.fixture(scope="module")
def tls_runtime(tmp_path_factory: pytest.TempPathFactory, minio_binary: Path) -> Iterator[Runtime]:
    dep = setup(tmp_path_factory.mktemp("tls") / "data", PASSPHRASE, scrypt_n=FAST_SCRYPT_N, host=HOST,
                runtime_port=free_port(HOST), minio_port=free_port(HOST), minio_console_port=free_port(HOST),
                dashboard_port=free_port(HOST))
    with MinioServer(dep, binary=minio_binary), unlocked_runtime(dep) as rt:
        yield rt


def test_cryospy_setup_defaults_to_tls_on_the_lan_address(tmp_path: Path):
    pass_file = tmp_path / "passphrase"
    pass_file.write_text(PASSPHRASE)
    proc = subprocess.run([sys.executable, "-m", "cryospy", "setup", "--data-dir", str(tmp_path / "d"),
                           "--passphrase-file", str(pass_file)], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    lan = find_lan_address()
    if lan is None:     # a box without a default route is told what to pass
        assert proc.returncode == 2 and "--host" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "d" / "deployment.json").read_text())
    assert doc["tls"] is True and doc["host"] == lan
    assert f"https://{lan}:8480" in proc.stdout and "tls/ca.crt" in proc.stdout
    cert = x509.load_pem_x509_certificate((tmp_path / "d" / "tls" / "runtime.crt").read_bytes())
    assert lan in certificates.certificate_names(cert)


def trusting(dep: Deployment) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=dep.ca_file)


def plain(port: int, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def https(dep: Deployment, port: int, method: str, path: str, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPSConnection(HOST, port, timeout=10, context=trusting(dep))
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def test_setup_made_an_authority_and_certificates_for_both_servers(tls_runtime: Runtime):
    dep = tls_runtime.dep
    assert dep.tls and dep.runtime_url.startswith("https://") and dep.minio_url.startswith("https://")
    files = certificates.TlsFiles.of(dep)
    assert files.ca_key.stat().st_mode & 0o777 == 0o600
    for cert_path in (files.runtime_cert, files.minio_cert):
        names = certificates.certificate_names(x509.load_pem_x509_certificate(cert_path.read_bytes()))
        assert {"127.0.0.1", "localhost", socket.gethostname().lower()} <= set(names)
    assert files.minio_trusted_ca.read_bytes() == files.ca_cert.read_bytes()


def test_an_agent_with_the_setup_ca_uploads_over_tls_and_the_clip_is_indexed(tls_runtime: Runtime, tmp_path: Path):
    dep = tls_runtime.dep
    config_path = tmp_path / "tls-cam.json"
    create_device(dep, "tls-cam", config_path, {**TINY, "temp_dir": str(tmp_path)})
    written = json.loads(config_path.read_text())
    assert written["server_url"] == dep.runtime_url and written["ca_bundle"] == Path(dep.ca_file).read_text()
    running = RunningAgent(config_path)
    try:
        clips = wait_for(lambda: [c for day in tls_runtime.services.index.days("tls-cam")
                                  for c in tls_runtime.services.index.clips_for_day("tls-cam", day)],
                         timeout=90, what="a clip uploaded over TLS and indexed")
        # MinIO's own notification reached the runtime too: MinIO verified the runtime's certificate with the
        # deployment's CA (certs/CAs), or it would still be retrying.
        wait_for(lambda: tls_runtime.webhook.records_received > 0, timeout=60, what="MinIO's webhook over TLS")
    finally:
        running.stop()
    assert running.error is None
    assert clips[0].sequence == 0
    assert running.agent.uploader.stats.uploaded >= 1


def test_an_agent_holding_another_ca_refuses_to_talk_and_says_why(tls_runtime: Runtime, tmp_path: Path):
    dep = tls_runtime.dep
    _, stranger = certificates.make_authority("someone else's CA")
    other_ca = stranger.public_bytes(serialization.Encoding.PEM).decode()
    config = parse_config({"client_id": "nobody", "client_secret": "s" * 20, "server_url": dep.api_url,
                           "deployment_public_key": tls_runtime.services.vault.public_key().to_text(),
                           "ca_bundle": other_ca}, tmp_path)
    client = ApiClient(config)
    with pytest.raises(ServerNotTrusted, match=r"does not verify against this agent's ca_bundle") as refused:
        client.get_settings()
    assert "certificate" in str(refused.value) and dep.api_url in str(refused.value)
    # MinIO's certificate comes from the same CA: the presigned PUT is refused before a byte of the clip moves.
    with pytest.raises(ServerNotTrusted):
        client.put_bytes(f"{dep.minio_url}/{dep.bucket}/clips/x.cse", {}, b"sealed clip")
    # The refused handshakes left the runtime serving everyone else.
    response, _ = https(dep, dep.runtime_port, "GET", "/health")
    assert response.status == 200


def dashboard_session(dep: Deployment) -> tuple[requests.Session, requests.Response]:
    http_ = requests.Session()
    page = http_.get(dep.dashboard_url + "/login", timeout=10, verify=dep.ca_file)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)   # type: ignore[union-attr]
    answer = http_.post(dep.dashboard_url + "/login", data={"csrf": csrf, "passphrase": PASSPHRASE},
                        allow_redirects=False, timeout=10, verify=dep.ca_file)
    return http_, answer


def test_the_dashboard_sends_hsts_and_a_secure_session_cookie(tls_runtime: Runtime):
    dep = tls_runtime.dep
    assert dep.dashboard_url.startswith("https://") and dep.dashboard_url != dep.runtime_url
    session, answer = dashboard_session(dep)
    assert answer.status_code == 302
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=")
    cookies = answer.raw.headers.getlist("Set-Cookie")
    session_cookie = next(c for c in cookies if c.startswith("cryospy_session="))
    assert "; Secure" in session_cookie and "HttpOnly" in session_cookie
    overview = session.get(dep.dashboard_url + "/", timeout=10, verify=dep.ca_file)
    assert overview.status_code == 200 and "Strict-Transport-Security" in overview.headers
    # The admin API (the CLI's way in) answers on the dashboard's listener, over TLS, trusting the CA.
    assert any(d["device_id"] == "tls-cam" for d in AdminClient.of(dep).call("GET", "/v1/admin/devices")["devices"])


@pytest.mark.parametrize("which", ["device", "dashboard"])
def test_plain_http_on_a_tls_port_is_redirected_or_refused(tls_runtime: Runtime, which: str):
    dep = tls_runtime.dep
    port = dep.runtime_port if which == "device" else dep.dashboard_port
    path = "/health" if which == "device" else "/login"
    got = plain(port, "GET", f"{path}?next=1")
    assert got.status == 301 and got.getheader("Location") == f"https://{HOST}:{port}{path}?next=1"
    posted = plain(port, "POST", "/v1/device/slots" if which == "device" else "/login", b'{"size": 1}')
    assert posted.status == 400
    assert posted.getheader("Strict-Transport-Security") is None    # HSTS only means something over TLS


def test_each_listener_answers_only_its_own_routes(tls_runtime: Runtime):
    dep = tls_runtime.dep
    device_only = [("GET", "/v1/device/settings"), ("POST", "/_minio/events"), ("GET", "/v1/device/live/watch")]
    dashboard_only = [("GET", "/login"), ("GET", "/"), ("GET", "/v1/admin/devices"), ("GET", "/static/app.css")]
    for method, path in device_only:
        response, data = https(dep, dep.dashboard_port, method, path)
        assert response.status == 404, (path, data)
    for method, path in dashboard_only:
        response, data = https(dep, dep.runtime_port, method, path)
        assert response.status == 404, (path, data)
    # What cameras need is there: the device API (401 without credentials) and the health check.
    assert https(dep, dep.runtime_port, "GET", "/v1/device/settings")[0].status == 401
    assert https(dep, dep.runtime_port, "GET", "/health")[0].status == 200
    assert https(dep, dep.dashboard_port, "GET", "/login")[0].status == 200


def test_body_caps_hold_over_tls_before_the_body_is_read(tls_runtime: Runtime):
    dep = tls_runtime.dep
    conn = http.client.HTTPSConnection(HOST, dep.runtime_port, timeout=10, context=trusting(dep))
    conn.putrequest("POST", "/_minio/events")
    conn.putheader("Content-Length", str(WEBHOOK_MAX_BODY + 4096))
    conn.putheader("Authorization", "Bearer nope")
    conn.endheaders()
    conn.send(b"x" * 1024)     # a small part of what was announced: the answer comes without the rest
    response = conn.getresponse()
    assert response.status == 413
    conn.close()


def test_host_names_outside_the_deployment_are_still_refused_over_tls(tls_runtime: Runtime):
    dep = tls_runtime.dep
    response, data = https(dep, dep.dashboard_port, "GET", "/login", headers={"Host": "attacker.example"})
    assert response.status == 421 and b"allowed_hosts" in data
