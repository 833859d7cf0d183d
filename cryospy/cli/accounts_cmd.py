"""``cryospy accounts list|add|remove|passwd``: dashboard accounts on the command line (docs/accounts.md).

Every command opens the key store with an account's passphrase (``--as``, default ``admin``; the passphrase
from ``--passphrase-file``, ``$CRYOSPY_PASSPHRASE`` or a prompt): listing shows records only a passphrase can
verify, and changes need the master key that passphrase unwraps. Only admins change other accounts; anyone may
change their own passphrase. A running runtime notices the change at its next request: a removed account's
sessions end then. With ``database_url`` in server.json the key store's copy in PostgreSQL is the one changed
(every runtime sharing the database applies it at once, docs/postgres.md); the local file follows.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryospy.common.accounts import AccountError, check_passphrase, new_account, parse_expiry
from cryospy.common.keys import KeyStore, OpenedStore
from cryospy.common.timefmt import utc_stamp

from .passphrase import read_passphrase


def add_parser(sub: argparse._SubParsersAction, data_dir: object, passphrase_file: object) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("accounts", help="dashboard accounts: admins and viewers limited to some cameras")
    asub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = asub.add_parser("list", help="list the accounts, their roles, cameras and expiry")
    a = _common(a, data_dir, passphrase_file)
    a = asub.add_parser("add", help="add an account with its own passphrase (its own key slot)")
    _common(a, data_dir, passphrase_file)
    a.add_argument("--name", required=True, help="the new account's name (lower case, e.g. anna)")
    a.add_argument("--role", choices=("viewer", "admin"), default="viewer", help="default: viewer")
    a.add_argument("--camera", action="append", default=[], metavar="CAMERA",
                   help="a camera the viewer may see; repeat for more (a viewer needs at least one)")
    a.add_argument("--expires", default="", help="YYYY-MM-DD (end of that UTC day) or a UTC time: access ends then")
    a.add_argument("--new-passphrase-file", type=Path, help="file with the new account's passphrase (else a prompt)")
    a = asub.add_parser("remove", help="remove an account: its key slot is destroyed, its sessions end")
    _common(a, data_dir, passphrase_file)
    a.add_argument("--name", required=True)
    a = asub.add_parser("passwd", help="set an account's passphrase (only its own slot is rewrapped)")
    _common(a, data_dir, passphrase_file)
    a.add_argument("--name", required=True, help="whose passphrase (yours, or any account's if you are an admin)")
    a.add_argument("--new-passphrase-file", type=Path, help="file with the new passphrase (else a prompt)")


def _common(p: argparse.ArgumentParser, data_dir: object, passphrase_file: object) -> argparse.ArgumentParser:
    data_dir(p)  # type: ignore[operator]
    passphrase_file(p)  # type: ignore[operator]
    p.add_argument("--as", dest="acting", default="admin", metavar="NAME",
                   help="the account whose passphrase opens the key store (default: admin)")
    return p


@dataclass(frozen=True)
class _Opened:
    dep: Any
    store: KeyStore
    opened: OpenedStore
    now: datetime


@contextlib.contextmanager
def _open(args: argparse.Namespace) -> Iterator[_Opened]:
    """The key store opened with the acting account's passphrase (a legacy store is upgraded by the admin);
    the shared copy when server.json has a database_url."""
    from cryospy.infra.deployment import load
    from cryospy.infra.stores import key_store

    dep = load(args.data_dir)
    passphrase = read_passphrase(args.passphrase_file, prompt=f"Passphrase of {args.acting}: ")
    assert passphrase is not None
    with key_store(dep) as store:
        if store.legacy and args.acting == "admin":
            store.upgrade(passphrase)
        yield _Opened(dep, store, store.open(passphrase, args.acting), datetime.now(UTC))


def list_accounts(args: argparse.Namespace) -> int:
    with _open(args) as o:
        for account in sorted(o.opened.accounts.values(), key=lambda a: a.name):
            cameras = "all cameras" if account.is_admin else ", ".join(sorted(account.cameras))
            expires = f"until {utc_stamp(account.expires)}" if account.expires else "no expiry"
            state = " (expired)" if account.expired(o.now) else ""
            print(f"{account.name:<20} {account.role:<7} {expires:<32} {cameras}{state}")
    return 0


def set_passphrase(args: argparse.Namespace) -> int:
    with _open(args) as o:
        if args.name != args.acting:
            _require_admin(o.opened, "set another account's passphrase")
        if args.name not in o.opened.accounts:
            raise AccountError(f"there is no account named {args.name!r}; `cryospy accounts list` shows them", "name")
        new = _new_passphrase(args, args.name)
        o.store.set_passphrase(o.opened.master, args.name, new)
        print(f"Passphrase of {args.name} changed; no other account and no clip was touched.")
    return 0


def remove_account(args: argparse.Namespace) -> int:
    with _open(args) as o:
        _require_admin(o.opened, "remove accounts")
        o.store.remove_account(o.opened.master, args.name)
        print(f"Removed {args.name}: its key slot is gone from {o.dep.keys_path}; its sessions end at their next "
              "request.")
    return 0


def add_account(args: argparse.Namespace) -> int:
    with _open(args) as o:
        _require_admin(o.opened, "add accounts")
        known = _cameras(o.dep)
        unknown = sorted(set(args.camera) - known)
        if unknown:
            cameras = ", ".join(sorted(known)) or "none yet"
            raise AccountError(f"no camera named {', '.join(unknown)}; cameras: {cameras}", "cameras")
        account = new_account(args.name, args.role, args.camera, parse_expiry(args.expires, o.now), o.now,
                              o.opened.accounts)
        o.store.add_account(o.opened.master, account, _new_passphrase(args, args.name))
        print(f"Added {args.role} {args.name}; it logs in with its own passphrase (name: {args.name}).")
    return 0


def _require_admin(opened: OpenedStore, what: str) -> None:
    if not opened.account.is_admin:
        raise AccountError(f"{opened.account.name!r} is a viewer; only an admin may {what} (use --as)")


def _new_passphrase(args: argparse.Namespace, name: str) -> str:
    new = read_passphrase(args.new_passphrase_file, confirm=args.new_passphrase_file is None, use_env=False,
                          prompt=f"New passphrase for {name}: ")
    assert new is not None
    check_passphrase(new, name)
    return new


def _cameras(dep: Any) -> set[str]:
    """The deployment's cameras, from wherever its registry lives (server.json's database_url)."""
    from cryospy.infra.server_config import load_server_config
    from cryospy.infra.stores import open_device_registry

    registry = open_device_registry(dep, load_server_config(dep.path("server.json")))
    try:
        return {d.device_id for d in registry.list()}
    finally:
        registry.close()
