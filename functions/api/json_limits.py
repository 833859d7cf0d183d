"""JSON from the network, with a bound on nesting.

``json.loads`` recurses once per ``[`` or ``{``; a body of a few KiB of brackets exhausts Python's recursion
limit and surfaces as an unhandled ``RecursionError`` (a 500 with a traceback in the log). Code that walks a
parsed document later (validators, ``json.dumps`` of a queued event) recurses too. So every document that
comes from outside is parsed here: a document nested deeper than :data:`MAX_DEPTH` is refused with
:class:`JsonTooDeep`, which is a ``ValueError`` like every other "this is not acceptable JSON" answer, so
callers that already turn ``ValueError`` into a 400 need no new branch.

No CryoSpy document nests more than a handful of levels (a motion zone is a list of polygons of points: 3).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32


class JsonTooDeep(ValueError):
    """The document nests deeper than the limit; the message says how deep is allowed."""


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`JsonTooDeep` (a ``ValueError``) instead of recursing without bound."""
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep(_too_deep(max_depth)) from None
    # Iterative, so that checking depth cannot itself overflow.
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise JsonTooDeep(_too_deep(max_depth))
        stack.extend((child, depth + 1) for child in children)
    return doc


def _too_deep(max_depth: int) -> str:
    return f"JSON nested more than {max_depth} levels deep; no CryoSpy document needs that, send a flatter one"
