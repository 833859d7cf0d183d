"""Strict configuration objects: an unknown key is an error that suggests the key the user meant.

A typo such as ``pasword`` must never silently mean "no password", so every config model in CryoSpy refuses
keys it does not know, and says which known key is closest.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def unknown_key_message(doc: Mapping[str, Any], known: Iterable[str], what: str) -> str | None:
    """The error message for the first unknown key in ``doc``, or ``None`` when every key is known."""
    known = list(known)
    for key in doc:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return f"{what} has unknown key {key!r}; {hint}known keys: {', '.join(known)}"
    return None


def over_defaults(doc: Any, defaults: Mapping[str, Any], *, what: str, error: Callable[[str, str], Exception],
                  known: Iterable[str] | None = None,
                  explain_unknown: Callable[[str, int], str] | None = None) -> dict[str, Any]:
    """The one way a settings document is read: ``doc``'s keys laid over ``defaults``.

    Refuses a ``doc`` that is not an object, and any key outside ``known`` (default: the keys of
    ``defaults``) with the closest known key as a hint, before anything is merged, so a typo never silently
    keeps a default. ``error(field, message)`` makes the exception (``field`` is ``what`` or the unknown
    key); ``explain_unknown(key, others)`` words the unknown-key message where a model has its own.
    Values are not checked here: the model that receives the merged dict does that, as a whole.
    """
    if not isinstance(doc, Mapping):
        raise error(what, f"{what} must be a JSON object, not {type(doc).__name__}")
    names = list(defaults if known is None else known)
    unknown = sorted(str(key) for key in doc if key not in names)   # the first reported: the same every time
    if unknown:
        message = (explain_unknown(unknown[0], len(unknown) - 1) if explain_unknown
                   else unknown_key_message({unknown[0]: None}, names, what))
        raise error(unknown[0], message or "")
    return dict(defaults) | dict(doc)


def message_only(kind: Callable[[str], Exception]) -> Callable[[str, str], Exception]:
    """An ``error`` for :func:`over_defaults` from an exception class that takes only a message."""
    return lambda _field, message: kind(message)
