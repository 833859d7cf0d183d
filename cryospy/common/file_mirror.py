"""A local file whose authoritative copy lives elsewhere (PostgreSQL, when several runtimes share a deployment).

The key store, the second-factor enrolments and the dashboard's saved channels are files in each runtime's data
directory. With ``database_url`` set the database holds the copy every runtime reads (infra/pg_documents.py), and
the local file is a cache of it, kept so the code that reads and writes these files stays the same. What that
code needs from the mirror is the two calls below; without a database it has no mirror and works on the file
alone, as it always did.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class FileMirror(Protocol):
    def pull(self) -> bool:
        """Make the local file the shared copy if that changed; True if the file was rewritten."""
        ...

    def editing(self) -> AbstractContextManager[None]:
        """Hold the shared copy for a read-modify-write of the local file: on entry the file is the shared copy
        and no other writer may change it; on a clean exit the file's new bytes become the shared copy."""
        ...
