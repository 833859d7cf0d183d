"""How every ``cryospy`` command logs: one line per record on standard error, dated and levelled.

Two shapes, chosen once at start-up:

* a terminal, a file, ``docker logs``: ``2026-02-14 03:04:05 INFO    cryospy.infra.runtime: ...``;
* under systemd, when ``$JOURNAL_STREAM`` names the stream we write to (systemd's documented test): no
  timestamp, since journald stamps every line itself, and each line starts with its syslog priority
  (``<6>`` info, ``<4>`` warning, ``<3>`` error, ``<7>`` debug), which journald turns into the entry's
  PRIORITY so that ``journalctl -p warning -u cryospy`` filters by level. A traceback's every line carries
  the prefix, because journald stores each line as an entry of its own.

Secrets never reach a log line on purpose (the code logs identifiers, not tokens); :class:`SecretFilter`
is the net under that rule: it masks the user-info of any URL, the signature and credential of a presigned
URL, and each secret the process registers (``cryospy serve`` registers its deployment's tokens and keys).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Iterable
from typing import IO, Any

LEVELS = ("debug", "info", "warning", "error")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Libraries that are chatty at INFO/DEBUG (and botocore's DEBUG output includes signed request headers).
QUIET_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "waitress", "PIL", "asyncio")
MASK = "***"


def syslog_priority(levelno: int) -> int:
    """The syslog priority journald records for a Python level (sd-daemon(3)'s ``<N>`` prefixes)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def writes_to_journal(stream: IO[str], env: dict[str, str] | os._Environ[str] | None = None) -> bool:
    """True when ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM`` is its
    ``device:inode``); a child whose stderr was redirected elsewhere inherits the variable but fails the test."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """Each line of the record (a traceback too) prefixed with the record's syslog priority."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


# scheme://user:password@host, and a presigned URL's signature and credential (query or header form).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]+@")
_SIGNED_PARTS = re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)[^&\s\"']+")


class SecretFilter(logging.Filter):
    """Masks secrets in a record's final text (message and traceback) before any handler writes it."""

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        # Short values would mask ordinary words; every secret CryoSpy makes is far longer than this.
        self._secrets.update(s for s in secrets if isinstance(s, str) and len(s) >= 8)

    def mask(self, text: str) -> str:
        text = _SIGNED_PARTS.sub(r"\1" + MASK, _URL_USERINFO.sub(r"\1" + MASK + "@", text))
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.mask(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if masked != message:
            record.msg, record.args = masked, None
        return True


SECRETS = SecretFilter()


def secret_fields(record: Any) -> list[str]:
    """A dataclass's secret values: the fields it keeps out of its repr (the deployment's tokens, an agent
    config's client secret and signing key), so that a new secret field is masked without a change here."""
    return [getattr(record, f.name) for f in dataclasses.fields(record) if not f.repr]


def configure_logging(level: str, stream: IO[str]) -> None:
    """Route every logger to ``stream`` at ``level`` (one of :data:`LEVELS`), journald-aware, secrets masked."""
    handler = logging.StreamHandler(stream)
    if writes_to_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT, DATE_FORMAT))
    handler.addFilter(SECRETS)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
