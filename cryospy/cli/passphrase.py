"""Where the admin passphrase comes from: a file (``-`` is standard input), the environment, or a prompt, in that
order. Standard input lets a container entrypoint hand over a secret file it can read and the service user
cannot (Compose secrets keep the host file's owner)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from cryospy.common.errors import CryoSpyError
from cryospy.functions.errors import BadRequest
from cryospy.functions.keyvault import check_new_passphrase


class PassphraseError(CryoSpyError):
    exit_code = 2


def read_passphrase(file: Path | None, *, confirm: bool = False, required: bool = True,
                    prompt: str = "Admin passphrase: ", use_env: bool = True) -> str | None:
    if file is not None:
        try:
            value = (sys.stdin.read() if str(file) == "-" else file.read_text()).rstrip("\n")
        except OSError as exc:
            raise PassphraseError(f"cannot read the passphrase file {file}: {exc}") from None
        if not value:
            raise PassphraseError(f"the passphrase file {file} is empty")
        return value
    env = os.environ.get("CRYOSPY_PASSPHRASE") if use_env else None
    if env:
        return env
    if not sys.stdin.isatty():
        if required:
            raise PassphraseError("no passphrase given: use --passphrase-file, set CRYOSPY_PASSPHRASE, or run "
                                  "in a terminal to be asked")
        return None
    value = getpass.getpass(prompt)
    if confirm:
        try:   # the same rules first-run setup in the browser applies
            check_new_passphrase(value, getpass.getpass("Repeat it: "))
        except BadRequest as exc:
            raise PassphraseError(f"{exc.message}; nothing was changed") from None
    return value
