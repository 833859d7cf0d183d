"""Strict configuration objects: an unknown key is an error that suggests the key the user meant.

A typo such as ``pasword`` must never silently mean "no password", so every config model in CryoSpy refuses
keys it does not know, and says which known key is closest.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
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
