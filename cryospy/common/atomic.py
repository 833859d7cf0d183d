"""The one way CryoSpy replaces a file on disk: a crash or power cut leaves the old content or the new, never a mix.

Why every step: the data goes to a temporary file in the same directory (a rename is atomic only within one
file system), the file is fsynced before the rename (else the rename can reach the disk before the data and a
power cut leaves an empty file under the real name), and the directory is fsynced after it (else the rename
itself can be lost, and the old content comes back). The temporary file is created with ``mode`` from the
start, so a secret is never readable by others, not even for a moment. Temporary names are
``.<name>.<random>.part``, so a folder that sweeps ``*.part`` at start-up (the agent's spool) also removes
what a crash left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

__all__ = ["fsync_dir", "write_atomic"]


def fsync_dir(folder: Path | str) -> None:
    """Make a rename, link or new file in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path | str, data: bytes, *, mode: int = 0o600, exclusive: bool = False) -> None:
    """Replace ``path`` with ``data`` durably (temp file, fsync, rename, fsync of the directory).

    ``mode`` is the new file's permission bits (0600 by default: most of what CryoSpy writes is a secret or
    sealed). With ``exclusive`` an existing ``path`` is never replaced: FileExistsError instead, decided
    atomically (a hard link, or ``O_EXCL`` on file systems without links). A missing parent folder is made
    0700.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if exclusive:
            _link_exclusive(tmp, path, mode)
        else:
            os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _link_exclusive(tmp: str, path: Path, mode: int) -> None:
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError as exc:   # file systems without hard links: claim the name with O_EXCL, then rename over it
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
        os.replace(tmp, path)
