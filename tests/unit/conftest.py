"""Fixtures of the unit tests that hold a store to one contract on both of its backends: the embedded one (the
default) and PostgreSQL (tests/postgres_server.py), where several runtimes share it
(tests/unit/test_shared_stores.py, tests/unit/test_shared_contacts.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh PostgreSQL schema's URL, or None for the embedded store."""
    return request.getfixturevalue("postgres").fresh_url() if backend == "postgres" else None
