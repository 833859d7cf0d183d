"""The local certificate authority and server certificates (infra/certificates.py), the agent's ``ca_bundle``,
and the front door's pieces for TLS and split listeners. Handshakes here are real TLS over a socket pair."""

from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cryospy.cli.setup_cmd import setup
from cryospy.edge_agent.config import parse_config
from cryospy.edge_agent.errors import ConfigError
from cryospy.infra import certificates, deployment
from cryospy.infra.front_door import DASHBOARD, DEVICE, route_family
from cryospy.infra.lan_address import find_lan_address


def new_tls_deployment(tmp_path: Path, **overrides: object) -> deployment.Deployment:
    dep = deployment.create(tmp_path / "d", tls=True, host="192.168.1.10", **overrides)
    certificates.create_authority(dep)
    return dep


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, name: str) -> str:
    """A real TLS handshake over a socket pair; returns the negotiated version (raises what the client raises)."""
    left, right = socket.socketpair()
    failure: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True) as tls:
                tls.recv(1)
        except (ssl.SSLError, OSError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=name) as tls:
            version = tls.version() or ""
            tls.sendall(b"x")
            return version
    finally:
        left.close()
        thread.join(10)
        right.close()


def test_setup_makes_a_private_ca_and_certificates_naming_the_lan_address(tmp_path: Path):
    dep = new_tls_deployment(tmp_path, tls_names=("cryospy.lan",))
    files = certificates.TlsFiles.of(dep)
    for private in (files.ca_key, files.runtime_key, files.minio_key):
        assert private.stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for cert_path in (files.runtime_cert, files.minio_cert):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
        names = certificates.certificate_names(cert)
        assert {"192.168.1.10", "cryospy.lan", "localhost", "127.0.0.1", socket.gethostname().lower()} <= set(names)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["192.168.1.10", "127.0.0.1"]
    assert files.minio_trusted_ca.read_bytes() == files.ca_cert.read_bytes()
    # The CA is never replaced behind the cameras' backs.
    with pytest.raises(certificates.CertificateError, match="cameras trust that CA"):
        certificates.create_authority(dep)


def test_the_runtime_certificate_verifies_against_the_ca_and_not_against_another(tmp_path: Path):
    dep = new_tls_deployment(tmp_path)
    server = certificates.server_context(dep)
    client = certificates.client_context(dep)
    assert client is not None
    assert handshake(server, client, "192.168.1.10") in ("TLSv1.2", "TLSv1.3")
    assert handshake(server, client, "localhost")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"IP address mismatch|Hostname mismatch"):
        handshake(server, client, "10.0.0.99")       # a name the certificate does not carry
    _, stranger = certificates.make_authority("someone else")
    other = ssl.create_default_context(cadata=stranger.public_bytes(serialization.Encoding.PEM).decode())
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(server, other, "192.168.1.10")


def test_server_certificates_are_reissued_only_when_a_name_is_missing(tmp_path: Path):
    dep = new_tls_deployment(tmp_path)
    files = certificates.TlsFiles.of(dep)
    before = files.runtime_cert.read_bytes(), files.minio_cert.read_bytes()
    certificates.ensure_server_certificates(dep)
    assert (files.runtime_cert.read_bytes(), files.minio_cert.read_bytes()) == before
    moved = deployment.Deployment(**{**dep.__dict__, "host": "10.1.2.3"})    # the box got another LAN address
    certificates.ensure_server_certificates(moved)
    cert = x509.load_pem_x509_certificate(files.runtime_cert.read_bytes())
    assert "10.1.2.3" in certificates.certificate_names(cert)
    assert files.ca_cert.read_bytes() == certificates.TlsFiles.of(moved).ca_cert.read_bytes()   # same CA


def issued_elsewhere(tmp_path: Path) -> Path:
    """What the Compose stack's tls-init service leaves: the CA in one folder, the runtime's files (and ca.crt,
    without the key) in another, whose path it returns."""
    issuer = certificates.TlsFiles(tmp_path / "ca" / "ca.crt", tmp_path / "ca" / "ca.key",
                                   tmp_path / "tls" / "runtime.crt", tmp_path / "tls" / "runtime.key",
                                   tmp_path / "certs")
    assert certificates.ensure_authority(issuer, "CryoSpy local CA (test)")
    assert not certificates.ensure_authority(issuer, "CryoSpy local CA (test)")      # kept, never replaced
    assert len(certificates.renew_server_certificates(issuer, ["192.168.1.10", "runtime", "minio"])) == 2
    assert certificates.renew_server_certificates(issuer, ["runtime", "192.168.1.10"]) == []   # still good
    (tmp_path / "tls" / "ca.crt").write_bytes(issuer.ca_cert.read_bytes())
    return tmp_path / "tls"


def test_a_runtime_with_tls_dir_serves_what_was_issued_elsewhere_and_holds_no_ca_key(tmp_path: Path):
    tls_dir = issued_elsewhere(tmp_path)
    dep = setup(tmp_path / "d", None, host="127.0.0.1", tls_dir=str(tls_dir))
    assert dep.ca_file == str(tls_dir / "ca.crt") and not (tmp_path / "d" / "tls").exists()
    assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.crt", "runtime.crt", "runtime.key"]
    client = certificates.client_context(dep)
    assert client is not None
    assert handshake(certificates.server_context(dep), client, "runtime")
    assert handshake(certificates.server_context(dep), client, "192.168.1.10")
    assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.crt", "runtime.crt", "runtime.key"]  # wrote nothing


def test_tls_dir_refuses_missing_or_foreign_certificates_before_making_the_deployment(tmp_path: Path):
    tls_dir = issued_elsewhere(tmp_path)
    (tls_dir / "runtime.key").unlink()
    with pytest.raises(certificates.CertificateError, match=r"runtime.key is missing.*tls-init"):
        setup(tmp_path / "d", None, host="127.0.0.1", tls_dir=str(tls_dir))
    assert not (tmp_path / "d" / deployment.FILE_NAME).exists()      # so that setup can simply run again
    _, stranger = certificates.make_authority("someone else")
    (tls_dir / "ca.crt").write_bytes(stranger.public_bytes(serialization.Encoding.PEM))
    (tls_dir / "runtime.key").write_bytes(b"placeholder: the signature check comes first")
    with pytest.raises(certificates.CertificateError, match=r"runtime.crt is not signed by .*ca.crt"):
        certificates.check_issued(certificates.TlsFiles.in_folders(tls_dir, tmp_path / "certs"))


def test_tls_dir_warns_in_the_last_month_and_refuses_an_expired_certificate(tmp_path: Path, monkeypatch,
                                                                           caplog: pytest.LogCaptureFixture):
    files = certificates.TlsFiles.in_folders(issued_elsewhere(tmp_path), tmp_path / "certs")
    start = certificates._now()
    monkeypatch.setattr(certificates, "_now", lambda: start + dt.timedelta(days=certificates.SERVER_DAYS - 10))
    with caplog.at_level(logging.WARNING, logger="cryospy.infra.certificates"):
        certificates.check_issued(files)
    assert "expires on" in caplog.text and "docker compose up -d" in caplog.text
    monkeypatch.setattr(certificates, "_now", lambda: start + dt.timedelta(days=certificates.SERVER_DAYS + 1))
    with pytest.raises(certificates.CertificateError, match=r"runtime.crt expired on .*docker compose up -d"):
        certificates.check_issued(files)


def test_server_names_leave_out_wildcards_and_repeat_nothing(tmp_path: Path):
    dep = deployment.Deployment(data_dir=tmp_path, host="192.168.1.10", dashboard_host="0.0.0.0",
                                public_api_url="https://cryospy.lan:8480", minio_public_url="https://cryospy.lan:9480",
                                tls_names=("CryoSpy.LAN.",))
    names = certificates.server_names(dep)
    assert "0.0.0.0" not in names and names.count("cryospy.lan") == 1 and names[0] == "192.168.1.10"


def test_deployment_urls_follow_tls_and_the_split_dashboard(tmp_path: Path):
    dep = deployment.create(tmp_path / "d", tls=True, host="192.168.1.10", runtime_port=8480, minio_port=9480,
                            dashboard_port=8443, dashboard_host="127.0.0.1", tls_names=("cryospy.lan",))
    assert dep.runtime_url == "https://192.168.1.10:8480" and dep.minio_url == "https://192.168.1.10:9480"
    assert dep.dashboard_url == "https://127.0.0.1:8443" and dep.ca_file == str(dep.path("tls", "ca.crt"))
    loaded = deployment.load(dep.data_dir)
    assert loaded == dep and loaded.tls_names == ("cryospy.lan",)
    plain = deployment.Deployment(data_dir=tmp_path, host="127.0.0.1", runtime_port=1)
    assert plain.runtime_url == "http://127.0.0.1:1" == plain.dashboard_url and plain.ca_file is None
    older = json.loads((dep.data_dir / deployment.FILE_NAME).read_text())
    for key in ("tls", "tls_names", "dashboard_port", "dashboard_host"):
        del older[key]                               # a deployment.json written before TLS existed
    (dep.data_dir / deployment.FILE_NAME).write_text(json.dumps(older))
    assert deployment.load(dep.data_dir).tls is False


def test_agent_ca_bundle_takes_pem_text_or_a_file_beside_the_config(tmp_path: Path):
    dep = new_tls_deployment(tmp_path)
    pem = certificates.ca_pem(dep)
    base = {"client_id": "cam", "client_secret": "s" * 20, "server_url": "https://192.168.1.10:8480",
            "deployment_public_key": "k"}
    assert parse_config({**base, "ca_bundle": pem}, tmp_path).ca_bundle == pem
    (tmp_path / "ca.crt").write_text(pem)
    assert parse_config({**base, "ca_bundle": "ca.crt"}, tmp_path).ca_bundle == str(tmp_path / "ca.crt")
    with pytest.raises(ConfigError, match=r"ca_bundle.*not a usable CA certificate"):
        parse_config({**base, "ca_bundle": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----"},
                     tmp_path)
    with pytest.raises(ConfigError, match=r"ca_bundle.*missing\.crt"):
        parse_config({**base, "ca_bundle": "missing.crt"}, tmp_path)


def test_route_families_split_what_cameras_need_from_the_dashboard():
    for path in ("/v1/device/slots", "/v1/device/live/watch", "/v1/device/heartbeat", "/health", "/_minio/events"):
        assert route_family(path) == DEVICE, path
    for path in ("/", "/login", "/v1/admin/devices", "/admin/devices", "/live/abc", "/v1/devices", "/healthz"):
        assert route_family(path) == DASHBOARD, path


def test_the_lan_address_is_never_loopback():
    address = find_lan_address()
    assert address is None or not address.startswith("127.")
