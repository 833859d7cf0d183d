"""Who is acting in the current request, so that domain functions can record their action once.

The admin API and the dashboard's forms call the same domain functions (``devices.lifecycle``,
``retention.clip_admin``). Recording in those functions, rather than in each edge, is what makes every action
appear once in the audit log whichever way it came; the edge only says who is acting. It does so with a
context variable: the runtime serves each request in a copy of the thread's context
(``infra.runtime.RuntimeApp``), so what one request sets never leaks into the next request on that thread.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Actor:
    """An account (by name: today only "admin"), the way it came in, and its address."""

    account: str
    via: str          # "dashboard", "api", "link", "runtime"
    address: str = ""


RUNTIME = Actor("system", "runtime")
_CURRENT: ContextVar[Actor | None] = ContextVar("cryospy_audit_actor", default=None)


def current() -> Actor:
    """The actor of this request; the runtime itself when no edge has said (a background job)."""
    return _CURRENT.get() or RUNTIME


def act_as(actor: Actor) -> None:
    """For the rest of this request (the runtime scopes requests; see the module docstring)."""
    _CURRENT.set(actor)


@contextmanager
def acting_as(actor: Actor) -> Iterator[None]:
    token = _CURRENT.set(actor)
    try:
        yield
    finally:
        _CURRENT.reset(token)
