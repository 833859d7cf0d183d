"""A local file whose authoritative copy lives elsewhere (PostgreSQL, when several runtimes share a deployment).

The key store, the second-factor enrolments and the dashboard's saved channels are files in each runtime's data
directory. With ``database_url`` set the database holds the copy every runtime reads (infra/pg_documents.py), and
the local file is a cache of it, kept so the code that reads and writes these files stays the same. What that
code needs from the mirror is the two calls below; without a database it has no mirror and works on the file
alone, as it always did.

::

    CryoSpyError
    └── MirrorError     the shared copy cannot be read or written
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from cryospy.common.errors import CryoSpyError


class MirrorError(CryoSpyError):
    """The shared copy cannot be read or written (the database is unreachable, or its copy does not open or
    went back to an older version); the message says what to do. Readers turn it into their own error."""

    exit_code = 3


class FileMirror(Protocol):
    def pull(self) -> bool:
        """Make the local file the shared copy if that changed; True if the file was rewritten."""
        ...

    def editing(self) -> AbstractContextManager[None]:
        """Hold the shared copy for a read-modify-write of the local file: on entry the file is the shared copy
        and no other writer may change it; on a clean exit the file's new bytes become the shared copy."""
        ...


@contextlib.contextmanager
def mirror_errors_as(error: Callable[[str], Exception]) -> Iterator[None]:
    """Raise a MirrorError inside as the caller's own error (the one its pages and commands already answer)."""
    try:
        yield
    except MirrorError as exc:
        raise error(str(exc)) from exc
