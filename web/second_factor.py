"""The second factor: TOTP (RFC 6238) codes and one-time recovery codes, per account, sealed at rest.

Why TOTP with pyotp: an authenticator app on the admin's phone works without anything leaving the house
(no SMS, no push service), and pyotp is the small, long-maintained reference implementation of RFC 4226/6238
for Python with no dependencies. The QR code for enrolment is drawn on the server as SVG (segno, pure
Python), so the page loads nothing from outside the LAN.

What is stored, in ``runtime/second-factor.sealed`` (sealed like the channel settings: AES-256-GCM under a key
derived from the index key, so the disk holds no TOTP secret in the clear)::

    {"require_all": bool,
     "accounts": {"<name>": {"secret": "<base32>", "last_step": int, "recovery": ["<sha-256 hex>", ...],
                             "enrolled_at": "<utc>"}}}

* A code is accepted for the current 30-second step or one step either side (clock drift), and only for a
  step *later* than the last one this account used: the same code, or an older one, cannot be replayed.
* Recovery codes (10, of 50 random bits each) are shown once at enrolment and kept only as SHA-256 hashes;
  each works once and is then struck out.
* Everything is keyed by account name, so accounts other than "admin" work unchanged when they arrive.

The index key exists only while the runtime is unlocked. The login asks for the code *after* the passphrase,
which unlocks the runtime, so the file can always be read when it is needed.

Exceptions::

    CryoSpyError
    └── SecondFactorError      the store cannot be read (damaged, other deployment): what to do
        └── WrongCode          the code is wrong, used already, or not a code at all
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import segno

from cryospy.common.errors import CryoSpyError
from cryospy.common.file_mirror import FileMirror, MirrorError, mirror_errors_as
from cryospy.common.sealed_json import SealedFileError, SealedJsonFile
from cryospy.common.timefmt import utc_stamp

MAGIC = b"CS2F1"
_INFO = b"cryospy second factor v1"
ISSUER = "CryoSpy"
RECOVERY_CODES = 10
DRIFT_STEPS = 1


class SecondFactorError(CryoSpyError):
    pass


class WrongCode(SecondFactorError):
    pass


def _hash(code: str) -> str:
    return hashlib.sha256(b"cryospy recovery code\n" + _normal(code).encode()).hexdigest()


def _normal(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def qr_svg(text: str) -> str:
    """``text`` as a QR code in inline SVG, drawn here (nothing is fetched)."""
    out = io.BytesIO()
    segno.make(text, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=False, svgns=True,
                                      svgclass="qr", lineclass=None, dark="#000", light="#fff")
    return out.getvalue().decode()


class SecondFactor:
    def __init__(self, path: Path, index_key: Callable[[], bytes], clock: Callable[[], float] = time.time,
                 mirror: FileMirror | None = None):
        """``mirror``: the shared copy when runtimes share a database, so an enrolment, and a used code, count
        on every runtime (every change is made under its lock, so a code is not accepted twice)."""
        self.path, self._clock = path, clock
        self._file = SealedJsonFile(path, index_key, MAGIC, _INFO, mirror)
        self._lock = threading.Lock()

    # -- the sealed file ----------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            doc = self._file.load()
        except SealedFileError as exc:
            raise SecondFactorError(f"{exc}; move it away and enrol the second factor again") from None
        except MirrorError as exc:   # a read outside an edit
            raise SecondFactorError(str(exc)) from None
        return doc if doc is not None else {"require_all": False, "accounts": {}}

    def _save(self, doc: dict[str, Any]) -> None:
        self._file.save(doc)

    # -- questions ----------------------------------------------------------------------------------
    def required(self) -> bool:
        return bool(self._load().get("require_all"))

    def enrolled(self, account: str) -> bool:
        return account in self._load()["accounts"]

    def recovery_left(self, account: str) -> int:
        return len(self._load()["accounts"].get(account, {}).get("recovery", []))

    # -- enrolment ----------------------------------------------------------------------------------
    @staticmethod
    def new_secret() -> str:
        return pyotp.random_base32()

    @staticmethod
    def uri(secret: str, account: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=ISSUER)

    def confirm(self, account: str, secret: str, code: str) -> list[str]:
        """Enrol ``account`` with ``secret`` once ``code`` proves the app has it; returns the recovery codes
        (shown once, kept hashed)."""
        step = self._matching_step(secret, code, after=-1)
        codes = [f"{c[:5]}-{c[5:]}" for c in (_recovery_code() for _ in range(RECOVERY_CODES))]
        with self._lock, mirror_errors_as(SecondFactorError), self._file.editing():
            doc = self._load()
            doc["accounts"][account] = {"secret": secret, "last_step": step, "recovery": [_hash(c) for c in codes],
                                        "enrolled_at": utc_stamp_now(self._clock)}
            self._save(doc)
        return codes

    def disable(self, account: str, code: str) -> None:
        """Remove the account's second factor; needs a current code (or a recovery code)."""
        self.check(account, code)
        with self._lock, mirror_errors_as(SecondFactorError), self._file.editing():
            doc = self._load()
            doc["accounts"].pop(account, None)
            self._save(doc)

    def set_required(self, on: bool) -> None:
        with self._lock, mirror_errors_as(SecondFactorError), self._file.editing():
            doc = self._load()
            doc["require_all"] = on
            self._save(doc)

    # -- login --------------------------------------------------------------------------------------
    def check(self, account: str, code: str) -> str:
        """Accept a TOTP code (not replayed) or an unused recovery code; returns "code" or "recovery". Raises
        WrongCode otherwise."""
        with self._lock, mirror_errors_as(SecondFactorError), self._file.editing():
            doc = self._load()
            record = doc["accounts"].get(account)
            if record is None:
                raise WrongCode("this account has no second factor")
            digits = code.strip().replace(" ", "")
            if digits.isdigit():
                record["last_step"] = self._matching_step(record["secret"], digits, after=record["last_step"])
                self._save(doc)
                return "code"
            hashed = _hash(code)
            match = next((h for h in record["recovery"] if hmac.compare_digest(h, hashed)), None)
            if match is None or not _normal(code):
                raise WrongCode("wrong code")
            record["recovery"].remove(match)
            self._save(doc)
            return "recovery"

    def _matching_step(self, secret: str, code: str, after: int) -> int:
        totp = pyotp.TOTP(secret)
        now = totp.timecode(int(self._clock()))
        code = code.strip().replace(" ", "")
        for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                if step <= after:
                    raise WrongCode("this code was used already; wait for the next one")
                return step
        raise WrongCode("wrong code")


def _recovery_code() -> str:
    """Ten characters of lower-case base32: 50 random bits."""
    return base64.b32encode(secrets.token_bytes(7)).decode().lower()[:10]


def utc_stamp_now(clock: Callable[[], float]) -> str:
    return utc_stamp(datetime.fromtimestamp(clock(), UTC))
