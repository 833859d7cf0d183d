"""The private scratch directory where plaintext clips live for the seconds between encoding and sealing.

Why a fixed, per-spool name rather than a fresh ``mkdtemp``: plaintext must be removed on every path, and
SIGKILL or a power cut is a path too. A name derived from the spool directory lets the next start find and
remove what a killed agent left behind. The directory is created 0700 by this process; an existing one is
only removed after checking that it is a real directory owned by us (never following a symlink someone
planted in a shared ``/tmp``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger("cryospy.agent.scratch")


def scratch_path(spool_dir: Path, temp_dir: str = "") -> Path:
    tag = hashlib.sha256(str(spool_dir.resolve()).encode()).hexdigest()[:16]
    return Path(temp_dir or tempfile.gettempdir()) / f"cryospy-agent-{tag}"


def open_scratch(spool_dir: Path, temp_dir: str = "") -> Path:
    """Create the scratch directory empty, removing a killed agent's leftovers first."""
    path = scratch_path(spool_dir, temp_dir)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            raise ConfigError(f"{path} exists but is not a directory owned by this user; remove it, or set "
                              "temp_dir in the agent config to a private directory")
        leftovers = len(os.listdir(path))
        shutil.rmtree(path)
        if leftovers:
            log.warning("removed %d plaintext file(s) a previous run left in %s (it was killed)", leftovers, path)
    try:
        os.mkdir(path, 0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create the private scratch directory {path}: {exc.strerror}; set temp_dir in "
                          "the agent config to a writable directory") from None
    return path


def close_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
