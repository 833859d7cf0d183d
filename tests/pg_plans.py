"""What the statements a PostgreSQL-backed part runs read, as the server's own ``auto_explain`` reports them.

Why: "the cost per clip does not grow with the history" is a claim about rows read, which is exact, where a
time is not (a shared 2-core machine). A :class:`PlanRecorder` hands out a connection pool whose sessions
load ``auto_explain`` with ``EXPLAIN ANALYZE`` of every statement (nested ones too) sent back to the client
as a notice; the recorder sums the plans: statements, rows returned by scans of the table asked about,
indexes used, sequential scans. The part under test runs its own statements unchanged. Used by
tests/unit/test_builder_reads.py and bench/bench_million.py. Needs a superuser (the test cluster's user).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg_pool import ConnectionPool

OPTIONS = ("-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=0 "
           "-c auto_explain.log_analyze=on -c auto_explain.log_format=json -c auto_explain.log_level=notice "
           "-c auto_explain.log_nested_statements=on -c client_min_messages=notice")


@dataclass
class Reads:
    statements: int = 0
    rows: int = 0                                   # rows returned by scans of the table
    indexes: set[str] = field(default_factory=set)
    seq_scans: int = 0                              # sequential scans of the table


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def explained_url(url: str, extra: str = "") -> str:
    """``url`` with the options that turn auto_explain on, and ``extra`` ones (added to any it has)."""
    options = f"{OPTIONS} {extra}".strip()
    if "options=" in url:
        return url + quote(" " + options)
    return url + ("&" if "?" in url else "?") + "options=" + quote(options)


class PlanRecorder:
    def __init__(self, table: str):
        self.table = table
        self._reads = Reads()
        self._lock = threading.Lock()

    def pool(self, url: str, max_size: int = 2, extra: str = "") -> ConnectionPool:
        """Connections to ``url`` whose plans this recorder sums; ``extra``: more ``-c`` settings."""
        pool = ConnectionPool(explained_url(url, extra), min_size=1, max_size=max_size, open=False,
                              configure=lambda conn: conn.add_notice_handler(self._notice))
        pool.open(wait=True, timeout=10)
        return pool

    def take(self) -> Reads:
        """What was read since the last take."""
        with self._lock:
            reads, self._reads = self._reads, Reads()
        return reads

    def _notice(self, diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if "plan:" not in message:
            return
        doc = json.loads(message.split("plan:", 1)[1])
        with self._lock:
            self._reads.statements += 1
            for node in _nodes(doc["Plan"]):
                if str(node.get("Index Name", "")).startswith(self.table):   # a bitmap scan's: a child node
                    self._reads.indexes.add(node["Index Name"])
                if node.get("Relation Name") != self.table:
                    continue
                self._reads.rows += int(node.get("Actual Rows", 0)) * int(node.get("Actual Loops", 1))
                if node.get("Node Type") == "Seq Scan":
                    self._reads.seq_scans += 1
