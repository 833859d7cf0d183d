"""Mailer against a real SMTP server (aiosmtpd on 127.0.0.1, free ports) plus settings validation.

The TLS certificates are generated here with ``cryptography``: a throw-away CA and a server certificate
for 127.0.0.1/localhost, so verification runs for real (``ca_file``) instead of being switched off.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import socket
import ssl
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cryospy.functions.alerts.mailer import Mailer, MailError, MailSettingsError, SmtpSettings

HOST = "127.0.0.1"
USER, PASSWORD = "cryospy", "s3cret-Pa55-do-not-leak"
FROM = "CryoSpy <cryospy@home.example>"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# -- certificates ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(root: Path) -> Pki:
    """A CA and a server certificate for localhost/127.0.0.1, valid for a day (EC keys: fast to make)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder().subject_name(_name("CryoSpy test CA")).issuer_name(_name("CryoSpy test CA"))
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(IPv4Address(HOST))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (root / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (root / "server.pem").write_bytes(cert.public_bytes(pem))
    (root / "server.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
    return Pki(root / "ca.pem", root / "server.pem", root / "server.key")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


# -- a recording SMTP server ----------------------------------------------------------------------------

@dataclass
class Recorder:
    messages: list[Any] = field(default_factory=list)
    logins: list[tuple[str, bytes, bool]] = field(default_factory=list)  # mechanism, user, accepted

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() \
            and auth_data.password == PASSWORD.encode()
        self.logins.append((mechanism, bytes(getattr(auth_data, "login", b"")), ok))
        return AuthResult(success=ok, handled=False)  # handled=False: the server sends the 535


@contextmanager
def smtp_server(**kwargs: Any) -> Iterator[tuple[int, Recorder]]:
    recorder = Recorder()
    port = free_port()
    if "authenticator" in kwargs:
        kwargs["authenticator"] = recorder.authenticate
    controller = Controller(recorder, hostname=HOST, port=port, server_hostname="localhost", **kwargs)
    controller.start()
    try:
        yield port, recorder
    finally:
        controller.stop()


def parse(envelope: Any) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.content, policy=email.policy.default)  # type: ignore[return-value]


# -- delivery -------------------------------------------------------------------------------------------

integration = pytest.mark.integration  # talks to a real SMTP server


@integration
def test_plain_delivery_keeps_utf8_headers_and_attachment_bytes() -> None:
    with smtp_server() as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, security="none")
        Mailer(settings, clock=lambda: 1_750_000_000.0).send(
            ["admin@home.example", "Zweite <second@home.example>"], "Bewegung erkannt – Garten ☃",
            "Kamera »Garten« hat um 20:00 Bewegung gesehen.\nGrüße", attachments=[("thumb.jpg", "image/jpeg", JPEG)])
    (envelope,) = server.messages
    assert envelope.mail_from == "cryospy@home.example"
    assert envelope.rcpt_tos == ["admin@home.example", "second@home.example"]
    message = parse(envelope)
    assert message["Subject"] == "Bewegung erkannt – Garten ☃"
    assert message["From"] == FROM
    assert message["Date"] == "Sun, 15 Jun 2025 15:06:40 +0000"
    assert message["Message-ID"].endswith("@home.example>")
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and body.get_content_charset() == "utf-8"
    assert body.get_content().replace("\r\n", "\n") == "Kamera »Garten« hat um 20:00 Bewegung gesehen.\nGrüße\n"
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "thumb.jpg" and attachment.get_content_type() == "image/jpeg"
    assert attachment.get_content() == JPEG
    assert envelope.content.isascii()  # 7-bit clean on the wire for relays without 8BITMIME


@integration
@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_starttls_with_verified_certificate_and_auth(pki: Pki, mechanism: str) -> None:
    other = {"PLAIN": ["LOGIN"], "LOGIN": ["PLAIN"]}[mechanism]
    with smtp_server(tls_context=pki.server_context(), require_starttls=True, authenticator=True,
                     auth_required=True, auth_exclude_mechanism=other) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, username=USER, password=PASSWORD,
                                security="starttls", ca_file=str(pki.ca_file))
        Mailer(settings).send(["admin@home.example"], "CryoSpy motion detected", "hello")
    assert server.logins == [(mechanism, USER.encode(), True)]
    (envelope,) = server.messages
    assert parse(envelope).get_content().rstrip("\r\n") == "hello"


@integration
def test_implicit_tls(pki: Pki) -> None:
    with smtp_server(ssl_context=pki.server_context(), authenticator=True, auth_require_tls=False) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, username=USER, password=PASSWORD,
                                security="tls", ca_file=str(pki.ca_file))
        Mailer(settings).send(["admin@home.example"], "tls", "over implicit TLS")
    assert [ok for *_, ok in server.logins] == [True]
    assert len(server.messages) == 1


@integration
def test_wrong_password_is_reported_without_the_password(pki: Pki) -> None:
    wrong = "wrong-Pa55word-XYZ"
    with smtp_server(tls_context=pki.server_context(), require_starttls=True, authenticator=True,
                     auth_required=True) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, username=USER, password=wrong,
                                ca_file=str(pki.ca_file))
        with pytest.raises(MailError, match=rf"{HOST}:{port}.*authentication failed.*check") as info:
            Mailer(settings).send(["admin@home.example"], "s", "b")
    assert server.messages == []
    report = "".join(traceback.format_exception(info.value)) + repr(settings)
    assert wrong not in report and PASSWORD not in report


@integration
def test_server_without_starttls_gets_nothing(pki: Pki) -> None:
    with smtp_server(authenticator=True, auth_require_tls=False) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, username=USER, password=PASSWORD,
                                security="starttls", ca_file=str(pki.ca_file))
        with pytest.raises(MailError, match=rf"{HOST}:{port}.*does not offer STARTTLS.*nothing"):
            Mailer(settings).send(["admin@home.example"], "s", "b")
    assert server.messages == [] and server.logins == []


@integration
def test_unknown_certificate_is_refused(pki: Pki) -> None:
    with smtp_server(tls_context=pki.server_context(), require_starttls=True) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM)  # system store: our test CA is unknown
        with pytest.raises(MailError, match=r"certificate was not accepted.*ca_file"):
            Mailer(settings).send(["admin@home.example"], "s", "b")
    assert server.messages == []


@integration
def test_starttls_client_on_an_implicit_tls_port_times_out_with_a_hint(pki: Pki) -> None:
    with smtp_server(ssl_context=pki.server_context()) as (port, server):
        settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, timeout=0.3, ca_file=str(pki.ca_file))
        with pytest.raises(MailError, match=r"no answer within 0.3 s.*security matches the port"):
            Mailer(settings).send(["admin@home.example"], "s", "b")
    assert server.messages == []


def test_unreachable_port() -> None:
    port = free_port()  # bound and released: nothing listens there
    settings = SmtpSettings(host=HOST, port=port, from_addr=FROM, security="none", timeout=2)
    with pytest.raises(MailError, match=rf"{HOST}:{port}.*connection refused.*host and port"):
        Mailer(settings).send(["admin@home.example"], "s", "b")


def test_missing_ca_file_is_reported_before_connecting(tmp_path: Path) -> None:
    settings = SmtpSettings(host=HOST, port=free_port(), from_addr=FROM, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(MailError, match=r"ca_file.*nope.pem.*readable PEM"):
        Mailer(settings).send(["admin@home.example"], "s", "b")


# -- arguments (validated before any connection) --------------------------------------------------------

def test_message_is_smtp_safe_without_a_server() -> None:
    mailer = Mailer(SmtpSettings(host=HOST, port=25, from_addr=FROM, security="none"), clock=lambda: 0.0)
    message = mailer.build_message(["a@b.example"], "s", "x" * 2000)
    assert message["Date"] == "Thu, 01 Jan 1970 00:00:00 +0000"
    assert message["Content-Transfer-Encoding"] == "quoted-printable"  # no line over SMTP's 998 limit
    assert max(len(line) for line in message.as_bytes().splitlines()) <= 998


@pytest.mark.parametrize(("to", "subject", "attachments", "message"), [
    ([], "s", (), "no recipients"),
    ("admin@home.example", "s", (), "as a list"),
    (["not an address"], "s", (), "'not an address' is not an e-mail address"),
    (["a@b.example\r\nBcc: evil@x.example"], "s", (), "is not an e-mail address"),
    (["a@b.example"], "line\nbreak", (), "line break"),
    (["a@b.example"], "s", [("t.jpg", "jpeg", b"x")], "'type/subtype'"),
    (["a@b.example"], "s", [("../t.jpg", "image/jpeg", b"x")], "plain file name"),
])
def test_bad_arguments_never_connect(to: Any, subject: str, attachments: Any, message: str) -> None:
    settings = SmtpSettings(host=HOST, port=free_port(), from_addr=FROM, security="none")
    with pytest.raises(MailError, match=message):
        Mailer(settings).send(to, subject, "b", attachments=attachments)


# -- settings -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("port", "security"), [(465, "tls"), (587, "starttls"), (25, "starttls"), (2525, "starttls")])
def test_security_defaults_from_port(port: int, security: str) -> None:
    settings = SmtpSettings.from_dict({"host": "smtp.example.org", "port": port, "from_addr": "a@b.example"})
    assert settings.security == security


def test_plain_text_only_when_asked() -> None:
    doc = {"host": "127.0.0.1", "port": 25, "from_addr": "a@b.example", "security": "none"}
    assert SmtpSettings.from_dict(doc).security == "none"


def test_password_is_not_in_repr() -> None:
    settings = SmtpSettings(host="h", port=587, from_addr="a@b.example", username="u", password=PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings)


@pytest.mark.parametrize(("doc", "message"), [
    ({"host": "h", "port": 587, "from_addr": "a@b.example", "pasword": "x"}, "unknown key 'pasword'.*'password'"),
    ({"host": "h", "from_addr": "a@b.example"}, "port is missing"),
    ({"host": "h", "port": 0, "from_addr": "a@b.example"}, r"1\.\.65535"),
    ({"host": "h", "port": "587", "from_addr": "a@b.example"}, r"1\.\.65535"),
    ({"host": "", "port": 587, "from_addr": "a@b.example"}, "not a host name"),
    ({"host": "h", "port": 587, "from_addr": "nobody"}, "not an e-mail address"),
    ({"host": "h", "port": 587, "from_addr": "a@b.example", "security": "ssl"}, "'tls' for port 465"),
    ({"host": "h", "port": 25, "from_addr": "a@b.example", "security": "none", "username": "u", "password": "p"},
     "clear text"),
    ({"host": "h", "port": 587, "from_addr": "a@b.example", "password": "p"}, "username is empty"),
    ({"host": "h", "port": 587, "from_addr": "a@b.example", "timeout": 0}, "seconds"),
    ({"host": "h", "port": 587, "from_addr": "a@b.example", "ca_file": "/x.pem", "verify": False}, "ignored"),
])
def test_settings_are_strict(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(MailSettingsError, match=message):
        SmtpSettings.from_dict(doc)
