"""Dashboard accounts: who may log in, as what, to which cameras, until when.

An account is a name (the first one, made at setup, is ``admin``), a role, the cameras a viewer was given,
an optional expiry and when it was made. The key store (:mod:`cryospy.common.keys`) keeps one key slot per
account and authenticates these records under a key only a passphrase-holder can derive, so editing the file
cannot give a viewer another camera. This module holds the record and the rules a new or changed account must
meet; it knows nothing about files or HTTP.

Roles::

    admin    sees every camera (also ones added later), administers, manages accounts; never expires
    viewer   sees, plays and exports only its cameras; cannot reach /admin or any admin form

Errors::

    CryoSpyError
    └── AccountError     a bad name, role, camera list or expiry; the message names the field and the fix
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cryospy.common.errors import CryoSpyError
from cryospy.common.timefmt import parse_utc, utc_stamp

ADMIN = "admin"
Role = Literal["admin", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "viewer")
MIN_PASSPHRASE_CHARS = 10
"""Every account's passphrase unwraps the deployment's keys; the CLI, first-run setup and the Accounts page all
enforce this minimum."""
MAX_ACCOUNTS = 64
MAX_CAMERAS = 256
MAX_CAMERA_NAME = 128
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")


class AccountError(CryoSpyError):
    """Refused account input. ``field`` names the form field at fault (``name``, ``role``, ``cameras``,
    ``expires``, ``passphrase``), so a form can show the message beside it."""

    exit_code = 2

    def __init__(self, message: str, field: str = "form"):
        super().__init__(message)
        self.message, self.field = message, field


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    cameras: frozenset[str] = field(default_factory=frozenset)   # viewers only; an admin sees every camera
    expires: datetime | None = None
    created: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def can_see(self, camera: str) -> bool:
        return self.is_admin or camera in self.cameras

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and now >= self.expires

    def to_json(self) -> dict[str, Any]:
        return {"role": self.role, "cameras": sorted(self.cameras),
                "expires": utc_stamp(self.expires) if self.expires else None,
                "created": utc_stamp(self.created) if self.created else None}

    @classmethod
    def from_json(cls, name: str, doc: Mapping[str, Any]) -> Account:
        """Parse a stored record; ValueError for anything malformed (the key store reports it as corrupt)."""
        if set(doc) != {"role", "cameras", "expires", "created"}:
            raise ValueError(f"account {name!r} has unexpected fields {sorted(doc)}")
        role = doc["role"]
        if role not in ROLES or not isinstance(doc["cameras"], list):
            raise ValueError(f"account {name!r} has a bad role or camera list")
        return cls(name=name, role=role, cameras=frozenset(str(c) for c in doc["cameras"]),
                   expires=parse_utc(doc["expires"]) if doc["expires"] else None,
                   created=parse_utc(doc["created"]) if doc["created"] else None)


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise AccountError(f"the account name {name[:40]!r} is not allowed: use 1 to 32 lower-case letters, digits, "
                           "'.', '_' or '-', starting with a letter or digit (e.g. 'anna' or 'neighbour-2')",
                           "name")
    return name


def check_passphrase(passphrase: str, name: str = "") -> None:
    """The rules a new passphrase must meet (the key store holds no hash to compare it against, so only these)."""
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise AccountError(f"choose a passphrase of at least {MIN_PASSPHRASE_CHARS} characters (it unwraps every "
                           "clip's key)", "passphrase")
    if name and passphrase.strip().lower() == name.lower():
        raise AccountError("the passphrase must not be the account's name", "passphrase")


def parse_expiry(text: str, now: datetime) -> datetime | None:
    """An expiry from a form or the command line: empty (never), a date (the end of that UTC day) or a UTC
    time; it must lie in the future."""
    text = text.strip()
    if not text:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            when = datetime.fromisoformat(text + "T23:59:59+00:00")
        else:
            when = parse_utc(text if re.search(r"(Z|[+-]\d\d:\d\d)$", text) else text + "Z")
    except ValueError:
        raise AccountError(f"the expiry {text[:40]!r} is not a date: give YYYY-MM-DD (access ends at the end of "
                           "that day, UTC) or YYYY-MM-DDTHH:MM (UTC)", "expires") from None
    if when <= now:
        raise AccountError(f"the expiry {utc_stamp(when)} is in the past; choose a later date, or remove the "
                           "account instead", "expires")
    return when.astimezone(UTC)


def new_account(name: str, role: str, cameras: Iterable[str], expires: datetime | None, now: datetime,
                existing: Mapping[str, Account]) -> Account:
    """Check everything about a new account but its passphrase; raises AccountError naming the field."""
    check_name(name)
    if name in existing:
        raise AccountError(f"an account named {name!r} already exists; choose another name, or edit that account",
                           "name")
    if len(existing) >= MAX_ACCOUNTS:
        raise AccountError(f"this deployment already has {MAX_ACCOUNTS} accounts; remove one first")
    if role not in ROLES:
        raise AccountError(f"the role must be 'admin' or 'viewer', not {role[:20]!r}", "role")
    return _checked(Account(name=name, role=role, cameras=frozenset(cameras), expires=expires,  # type: ignore[arg-type]
                            created=now), now)


def changed_account(account: Account, cameras: Iterable[str] | None, expires: datetime | str | None,
                    now: datetime) -> Account:
    """``account`` with new cameras and/or expiry (``"keep"`` keeps the expiry); raises AccountError."""
    new = Account(name=account.name, role=account.role,
                  cameras=account.cameras if cameras is None else frozenset(cameras),
                  expires=account.expires if expires == "keep" else expires,  # type: ignore[arg-type]
                  created=account.created)
    return _checked(new, now)


def _checked(account: Account, now: datetime) -> Account:
    if account.is_admin:
        if account.cameras:
            raise AccountError("an admin sees every camera; leave the camera list empty or make the account a "
                               "viewer", "cameras")
        if account.expires is not None:
            raise AccountError("admin accounts do not expire (an expired last admin would lock everyone out); "
                               "give time-limited access as a viewer", "expires")
        return account
    if not account.cameras:
        raise AccountError("a viewer needs at least one camera; tick the cameras this person may see", "cameras")
    if len(account.cameras) > MAX_CAMERAS or any(not c or len(c) > MAX_CAMERA_NAME for c in account.cameras):
        raise AccountError("the camera list is too long or holds an empty or over-long name", "cameras")
    if account.expires is not None and account.expires <= now:
        raise AccountError(f"the expiry {utc_stamp(account.expires)} is in the past; choose a later date",
                           "expires")
    return account


def check_removal(name: str, accounts: Mapping[str, Account]) -> None:
    """Refuse to remove an unknown account or the last admin (nobody could administer any more)."""
    account = accounts.get(name)
    if account is None:
        raise AccountError(f"there is no account named {name[:40]!r}; `cryospy accounts list` shows them", "name")
    if account.is_admin and sum(1 for a in accounts.values() if a.is_admin) == 1:
        raise AccountError(f"{name!r} is the last admin account; add another admin before removing it", "name")
