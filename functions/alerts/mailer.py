"""A small, strict SMTP client for alert mail (motion, storage, auth failures, silent devices).

The original chose the transport from the port alone (465 *and* 587 as implicit TLS, which breaks 587) and
silently fell back to plaintext when a server did not offer STARTTLS. Here the transport is an explicit
setting, and a "starttls" server that does not offer STARTTLS is refused before anything is sent: alert
mail names devices, times and may carry a thumbnail, so it must not leave the house in clear text by
accident.

Errors::

    FunctionsError
    ├── MailSettingsError   the smtp settings are invalid (raised at start-up, before any network call)
    └── MailError           a send failed: the message names host:port, the cause (refused, timeout, TLS,
                            authentication, rejected recipient) and what to check; never the password

Both wrap the underlying ``smtplib``/``ssl``/``OSError`` with ``raise … from exc``.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Any, Literal, get_args

from cryospy.common.strict_keys import message_only, over_defaults
from cryospy.functions.errors import FunctionsError

Security = Literal["starttls", "tls", "none"]
SECURITY_MODES: tuple[str, ...] = get_args(Security)
IMPLICIT_TLS_PORT = 465
MAX_TIMEOUT_SECONDS = 300.0


class MailSettingsError(FunctionsError):
    """The ``smtp_settings`` section is invalid; the message names the key and the fix."""


class MailError(FunctionsError):
    """A message could not be sent; the message names the server, the cause and what to check."""


def _is_address(value: str) -> bool:
    """A deliberately small check: one ``local@domain`` without whitespace or header-breaking characters."""
    _, addr = parseaddr(value)
    if not addr or any(c in value for c in "\r\n"):
        return False
    local, sep, domain = addr.rpartition("@")
    return bool(sep and local and domain) and not any(c.isspace() for c in addr)


@dataclass(frozen=True)
class SmtpSettings:
    """How to reach the outgoing mail server.

    ``security``:

    * ``"starttls"`` – connect in plain text and upgrade with STARTTLS (port 587, and 25 on most relays);
      a server that does not offer STARTTLS is refused, whether or not credentials are set.
    * ``"tls"`` – implicit TLS from the first byte (port 465).
    * ``"none"`` – plain text, meant only for a relay on the same host or LAN; credentials are refused in
      this mode because they would cross the network in clear.

    ``ca_file`` replaces the system trust store (a self-hosted relay with its own CA); ``verify=False``
    turns certificate checks off entirely and is only for testing.
    """

    host: str
    port: int
    from_addr: str
    username: str = ""
    password: str = field(repr=False, default="")
    security: Security = "starttls"
    timeout: float = 20.0
    ca_file: str = ""
    verify: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip() or any(c.isspace() for c in self.host):
            raise MailSettingsError(f"smtp_settings.host {self.host!r} is not a host name; set it to e.g. "
                                    "'smtp.example.org' or '127.0.0.1'")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise MailSettingsError(f"smtp_settings.port {self.port!r} must be an integer in 1..65535 "
                                    "(465 for implicit TLS, 587 for STARTTLS, 25 for a local relay)")
        if not isinstance(self.from_addr, str) or not _is_address(self.from_addr):
            raise MailSettingsError(f"smtp_settings.from_addr {self.from_addr!r} is not an e-mail address; "
                                    "use e.g. 'cryospy@example.org' or 'CryoSpy <cryospy@example.org>'")
        if self.security not in SECURITY_MODES:
            raise MailSettingsError(f"smtp_settings.security {self.security!r} is not one of "
                                    f"{', '.join(SECURITY_MODES)}; use 'tls' for port 465, 'starttls' for 587")
        for name in ("username", "password", "ca_file"):
            if not isinstance(getattr(self, name), str):
                raise MailSettingsError(f"smtp_settings.{name} must be a string")
        if self.password and not self.username:
            raise MailSettingsError("smtp_settings.password is set but username is empty; set the username "
                                    "too, or remove the password for a relay without authentication")
        if self.username and self.security == "none":
            raise MailSettingsError("smtp_settings.username is set with security 'none', which would send the "
                                    "password in clear text; use 'starttls' or 'tls', or drop the credentials")
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, int | float) \
                or not 0 < self.timeout <= MAX_TIMEOUT_SECONDS:
            raise MailSettingsError(f"smtp_settings.timeout {self.timeout!r} must be a number of seconds in "
                                    f"(0, {MAX_TIMEOUT_SECONDS:g}]")
        if not isinstance(self.verify, bool):
            raise MailSettingsError(f"smtp_settings.verify {self.verify!r} must be true or false")
        if self.ca_file and not self.verify:
            raise MailSettingsError("smtp_settings.ca_file is set but verify is false, so it would be ignored; "
                                    "remove one of them")

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SmtpSettings:
        """Build settings from the config file's ``smtp_settings`` object.

        Unknown keys are an error (a typo such as ``pasword`` must not silently mean "no password"). When
        ``security`` is absent it is derived from the port: 465 means implicit TLS, anything else means
        STARTTLS. Plain text is never a default: it must be asked for with ``"security": "none"``, because
        guessing it from port 25 would send alerts unencrypted across the internet to any remote relay.
        """
        values = over_defaults(doc, {}, known=[f.name for f in fields(cls)], what="smtp_settings",
                               error=message_only(MailSettingsError))
        for required in ("host", "port", "from_addr"):
            if required not in values:
                raise MailSettingsError(f"smtp_settings.{required} is missing; add it (or remove smtp_settings "
                                        "to turn e-mail off)")
        if "security" not in values:
            values["security"] = "tls" if values["port"] == IMPLICIT_TLS_PORT else "starttls"
        return cls(**values)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


class Mailer:
    """Sends plain-text UTF-8 mail through one configured server; one connection per message.

    A connection per message keeps the client stateless (alerts are rare, and a pooled connection would
    need idle-timeout handling the servers enforce differently). ``clock`` only sets the Date header.
    """

    def __init__(self, settings: SmtpSettings, *, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self._clock = clock

    def send(self, to: Sequence[str], subject: str, body: str, *,
             attachments: Sequence[tuple[str, str, bytes]] = ()) -> None:
        """Send one message to every address in ``to``; raise :class:`MailError` unless all accepted it.

        ``attachments`` are ``(filename, mime type, bytes)``, e.g. ``("thumb.jpg", "image/jpeg", data)``.
        Arguments are validated before connecting, so a bad address never half-sends.
        """
        message = self.build_message(to, subject, body, attachments=attachments)
        recipients = [parseaddr(addr)[1] for addr in to]
        sender = parseaddr(self.settings.from_addr)[1]
        try:
            with self._connect() as smtp:
                refused = smtp.send_message(message, from_addr=sender, to_addrs=recipients)
        except (smtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise MailError(self._explain(exc)) from exc
        if refused:
            rejected = ", ".join(f"{addr} ({code} {self._reply(text)})" for addr, (code, text) in refused.items())
            raise MailError(f"mail via {self.settings.endpoint} reached only some recipients; refused: "
                            f"{rejected}; check these addresses")

    def build_message(self, to: Sequence[str], subject: str, body: str, *,
                      attachments: Sequence[tuple[str, str, bytes]] = ()) -> EmailMessage:
        """The exact message :meth:`send` transmits (exposed so callers and tests can inspect it)."""
        endpoint = self.settings.endpoint
        if isinstance(to, str):
            raise MailError(f"mail via {endpoint} not sent: pass recipients as a list, not the string {to!r}")
        if not to:
            raise MailError(f"mail via {endpoint} not sent: no recipients; set a notification recipient")
        for addr in to:
            if not isinstance(addr, str) or not _is_address(addr):
                raise MailError(f"mail via {endpoint} not sent: recipient {addr!r} is not an e-mail address; "
                                "fix the notification recipient in the configuration")
        if any(c in subject for c in "\r\n"):
            raise MailError(f"mail via {endpoint} not sent: the subject contains a line break; remove it")
        message = EmailMessage()
        message["From"] = self.settings.from_addr
        message["To"] = ", ".join(to)
        message["Subject"] = subject
        message["Date"] = format_datetime(datetime.fromtimestamp(self._clock(), UTC))
        # An explicit domain avoids make_msgid's reverse DNS lookup and keeps the host name private.
        message["Message-ID"] = make_msgid(domain=parseaddr(self.settings.from_addr)[1].rpartition("@")[2])
        # Quoted-printable keeps non-ASCII text 7-bit clean (and readable) for relays without 8BITMIME; for
        # ASCII the library picks 7bit, or quoted-printable when a line is too long for SMTP.
        message.set_content(body, charset="utf-8", cte=None if body.isascii() else "quoted-printable")
        for filename, mime_type, data in attachments:
            maintype, sep, subtype = mime_type.partition("/")
            if not sep or not maintype or not subtype or "/" in subtype:
                raise MailError(f"mail via {endpoint} not sent: attachment {filename!r} has mime type "
                                f"{mime_type!r}; use 'type/subtype' such as 'image/jpeg'")
            if not filename or any(c in filename for c in "\r\n/\\"):
                raise MailError(f"mail via {endpoint} not sent: attachment name {filename!r} must be a plain "
                                "file name without path separators or line breaks")
            message.add_attachment(bytes(data), maintype=maintype, subtype=subtype, filename=filename)
        return message

    def _tls_context(self) -> ssl.SSLContext:
        if not self.settings.verify:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        try:
            return ssl.create_default_context(cafile=self.settings.ca_file or None)
        except (OSError, ssl.SSLError) as exc:
            raise MailError(f"mail via {self.settings.endpoint} not sent: smtp_settings.ca_file "
                            f"{self.settings.ca_file!r} cannot be loaded ({exc}); point it at a readable PEM "
                            "CA certificate") from exc

    def _connect(self) -> smtplib.SMTP:
        """Open, secure and authenticate a session; the caller closes it (``with``)."""
        s = self.settings
        smtp: smtplib.SMTP
        context = self._tls_context() if s.security != "none" else None
        if s.security == "tls":
            smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context)
        else:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        try:
            smtp.ehlo()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise MailError(f"mail via {s.endpoint} not sent: the server does not offer STARTTLS, and "
                                    "security is 'starttls'; nothing (no credentials, no message) was sent. "
                                    "Use port 465 with security 'tls', or 'none' only for a local relay")
                smtp.starttls(context=context)
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _reply(self, text: bytes | str) -> str:
        reply = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
        if self.settings.password:
            reply = reply.replace(self.settings.password, "***")
        return reply

    def _explain(self, exc: BaseException) -> str:
        """Translate a transport failure into cause + remedy; never echo the password."""
        where = f"mail via {self.settings.endpoint} not sent"
        if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
            exc = exc.__context__  # smtplib reports a read timeout as a disconnect
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return (f"{where}: authentication failed for user {self.settings.username!r} "
                    f"({exc.smtp_code} {self._reply(exc.smtp_error)}); check smtp_settings.username and "
                    "password (some providers need an app password)")
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return (f"{where}: the server does not support a command we need ({self._reply(str(exc))}); if "
                    "it offers no AUTH, remove the credentials or check security/port")
        if isinstance(exc, smtplib.SMTPSenderRefused):
            return (f"{where}: sender {exc.sender!r} refused ({exc.smtp_code} {self._reply(exc.smtp_error)}); "
                    "check that smtp_settings.from_addr is allowed for this account")
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            rejected = ", ".join(f"{addr} ({code} {self._reply(text)})"
                                 for addr, (code, text) in exc.recipients.items())
            return f"{where}: every recipient was refused: {rejected}; check the addresses"
        if isinstance(exc, smtplib.SMTPResponseException):
            return f"{where}: the server replied {exc.smtp_code} {self._reply(exc.smtp_error)}"
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return (f"{where}: the server closed the connection ({self._reply(str(exc))}); check that "
                    "security matches the port (465 'tls', 587 'starttls')")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return (f"{where}: the TLS certificate was not accepted ({exc.verify_message}); set "
                    "smtp_settings.ca_file to the server's CA, or check that host matches the certificate")
        if isinstance(exc, ssl.SSLError):
            return (f"{where}: TLS failed ({exc.reason or exc}); check that security matches the port "
                    "(465 'tls', 587 'starttls')")
        if isinstance(exc, ConnectionRefusedError):
            return f"{where}: connection refused; check host and port and that the mail server is running"
        if isinstance(exc, TimeoutError):
            return (f"{where}: no answer within {self.settings.timeout:g} s; check host, port, firewalls, and "
                    "that security matches the port (a 'starttls' client on an implicit-TLS port waits forever)")
        if isinstance(exc, socket.gaierror):
            return f"{where}: cannot resolve host {self.settings.host!r} ({exc.strerror}); check the host name"
        return f"{where}: {type(exc).__name__}: {self._reply(str(exc))}"
