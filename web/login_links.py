"""One-time login links: the admin's way into the dashboard that no attacker can block.

``cryospy dashboard login-link`` runs on the server, as the user that owns the data directory, and writes a
claim for a fresh 256-bit token into ``<data-dir>/runtime/login-links/`` (mode 0600, inside the 0700 runtime
directory): the file is named by the token's SHA-256 and holds its expiry and the account it logs in (``admin``
unless ``--account`` names another; that account's camera access applies as for a login). The runtime redeems a token by
deleting that file — exactly one request can succeed — and never stores the token itself. With ``database_url``
the claim is a row in PostgreSQL instead (:class:`~cryospy.web.pg_login_state.PostgresLoginLinks`: the token's
keyed hash, deleted by the one request that redeems it), so any runtime of the deployment redeems it. Issuing a link
needs the same access as reading the deployment's admin API token, so a link grants nothing new; a guess
at a token cannot succeed, which is why redeeming one is not rate-limited and why an attacker's failed
logins cannot stand in its way.

Errors::

    CryoSpyError
    └── LinkInvalid   unknown, used or expired token (one message for all three)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from cryospy.common.accounts import ADMIN, check_name
from cryospy.common.errors import CryoSpyError

LINKS_DIR = ("runtime", "login-links")
DEFAULT_MINUTES = 10
MAX_MINUTES = 60
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class LinkInvalid(CryoSpyError):
    def __init__(self) -> None:
        super().__init__("This login link is unknown, used or expired. Make a new one on the server with "
                         "`cryospy dashboard login-link`.")


class Links(Protocol):
    def issue(self, minutes: int = DEFAULT_MINUTES, account: str = ADMIN) -> str: ...

    def check(self, token: str) -> None: ...

    def redeem(self, token: str) -> str: ...

    def close(self) -> None: ...


def check_request(minutes: int, account: str) -> None:
    """Refuse a lifetime outside 1..60 minutes or a malformed account name before anything is written."""
    if not 1 <= minutes <= MAX_MINUTES:
        raise CryoSpyError(f"a login link lives 1 to {MAX_MINUTES} minutes, not {minutes}")
    check_name(account)


def check_token(token: object) -> str:
    """The token if it has a token's shape (43 URL-safe characters), else :class:`LinkInvalid`: nothing that
    could name a path or bloat a query reaches the store."""
    if not isinstance(token, str) or not _TOKEN.fullmatch(token):
        raise LinkInvalid()
    return token


class LoginLinks:
    def __init__(self, directory: Path, clock: Callable[[], float] = time.time):
        self.directory = Path(directory)
        self._clock = clock

    def issue(self, minutes: int = DEFAULT_MINUTES, account: str = ADMIN) -> str:
        """Make a token valid for ``minutes`` (1..60) that logs ``account`` in; only its hash is written."""
        check_request(minutes, account)
        token = secrets.token_urlsafe(32)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._prune()
        fd = os.open(self._path(token), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"expires": self._clock() + minutes * 60, "account": account}, fh)
        return token

    def check(self, token: str) -> None:
        """Raise :class:`LinkInvalid` unless ``token`` is live (does not use it up)."""
        self._claim(token)

    def redeem(self, token: str) -> str:
        """Use the token up and return the account it logs in; raises :class:`LinkInvalid` if it is unknown,
        used (also concurrently) or expired."""
        expires, account = self._claim(token)
        try:
            self._path(token).unlink()   # atomic: of two concurrent redeemers exactly one gets here
        except FileNotFoundError:
            raise LinkInvalid() from None
        if expires < self._clock():
            raise LinkInvalid()
        return account

    def close(self) -> None:
        pass

    def _claim(self, token: str) -> tuple[float, str]:
        check_token(token)
        try:
            doc = json.loads(self._path(token).read_text())
            expires, account = float(doc["expires"]), str(doc.get("account", ADMIN))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise LinkInvalid() from None
        if expires < self._clock():
            raise LinkInvalid()
        return expires, account

    def _path(self, token: str) -> Path:
        return self.directory / hashlib.sha256(token.encode()).hexdigest()

    def _prune(self) -> None:
        now = self._clock()
        for path in self.directory.iterdir():
            try:
                if float(json.loads(path.read_text())["expires"]) < now:
                    path.unlink(missing_ok=True)
            except (OSError, ValueError, KeyError, TypeError):
                continue
