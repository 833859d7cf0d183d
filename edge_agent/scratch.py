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

log = logging.getLogger(__name__)


# RAM-backed file systems: plaintext there never reaches a disk, so a stolen SD card or disk holds no video.
RAM_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
# A RAM directory with less room than this is passed over: a few clips in flight must fit (a 60 s clip of a
# 4 Mbit/s camera is 30 MB), and Docker gives containers a 64 MB /dev/shm by default.
MIN_RAM_FREE_BYTES = 256 * 1024 * 1024


def filesystem_of(path: Path, mounts: str | None = None) -> str:
    """The file-system type ``path`` lives on (from /proc/mounts: the longest mount point above it), or ''."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return ""
    best, kind = "", ""
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def default_temp_dir(candidates: tuple[str, ...] | None = None, mounts: str | None = None) -> Path:
    """Where plaintext clips live when the config does not say: the first RAM-backed candidate
    (``/dev/shm``, ``$XDG_RUNTIME_DIR``) that is writable and has room, else the system temp directory."""
    if candidates is None:
        candidates = ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR", ""))
    for candidate in filter(None, candidates):
        path = Path(candidate)
        try:
            usable = path.is_dir() and os.access(path, os.W_OK | os.X_OK)
            room = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize if usable else 0
        except OSError:
            continue
        if usable and room >= MIN_RAM_FREE_BYTES and filesystem_of(path.resolve(), mounts) in RAM_FILESYSTEMS:
            return path
    return Path(tempfile.gettempdir())


def scratch_path(spool_dir: Path, temp_dir: str = "") -> Path:
    tag = hashlib.sha256(str(spool_dir.resolve()).encode()).hexdigest()[:16]
    return (Path(temp_dir) if temp_dir else default_temp_dir()) / f"cryospy-agent-{tag}"


def warn_if_persistent(path: Path) -> bool:
    """Log a warning when the scratch directory is on a disk rather than in RAM; True if it is on a disk."""
    kind = filesystem_of(path.resolve())
    if kind in RAM_FILESYSTEMS:
        return False
    log.warning("plaintext clips live for seconds in %s, which is on %s, not in RAM: a stolen or discarded "
                "disk may hold traces of unencrypted video. Set temp_dir in the agent config to a tmpfs "
                "directory (e.g. /dev/shm, or a systemd PrivateTmp/RuntimeDirectory on tmpfs)", path,
                kind or "an unknown file system")
    return True


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
    warn_if_persistent(path)
    return path


def close_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
