"""The audit-log part of ``cryospy verify``: an export's ``audit/`` folder, checked with no private key.

``audit/audit.log`` is the log as stored (sealed, hash-chained, signed while the server was unlocked);
``audit/entries.json`` gives the server's verify key and, per entry, its own AES key and the readable entry.
The check: the chain from the first entry (nothing changed, removed or reordered), every server signature,
and every readable entry against its sealed copy (the box opens with the disclosed key and holds exactly that
entry). Lines with no disclosure are named: the server could not open them when it exported.

The verify key comes from the export, so it vouches for nothing by itself: its fingerprint is printed to be
compared with the one the dashboard shows at the top of Admin → Audit, as with camera keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryospy.common.audit_chain import AuditCheck, AuditFormatError, check_log, open_with_key, parse_line
from cryospy.common.errors import CryoSpyError
from cryospy.common.keys import verify_key_fingerprint, verify_key_from_text

LOG = Path("audit", "audit.log")
ENTRIES = Path("audit", "entries.json")


@dataclass
class AuditVerdict:
    check: AuditCheck
    fingerprint: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.check.ok and not self.problems


def verify_audit(folder: Path) -> AuditVerdict | None:
    """None when the folder carries no audit log."""
    if not (folder / LOG).is_file():
        return None
    lines = [line for line in (folder / LOG).read_text(errors="replace").split("\n") if line]
    problems: list[str] = []
    try:
        doc = json.loads((folder / ENTRIES).read_text())
        key = verify_key_from_text(doc["server_verify_key"])
        disclosed = {int(d["n"]): d for d in doc["entries"]}
    except (OSError, ValueError, KeyError, TypeError, CryoSpyError) as exc:
        return AuditVerdict(check_log(lines, None), "", [f"{ENTRIES} is missing or unreadable ({exc}); take it "
                                                         "again from the export zip"])
    check = check_log(lines, key)
    for i, text in enumerate(lines):
        if not check.ok and i >= (check.first_bad or 0):
            break
        line = parse_line(text)
        entry = disclosed.get(line.n)
        if entry is None:
            problems.append(f"audit entry {line.n}: not disclosed in {ENTRIES} (the server could not open it)")
            continue
        try:
            sealed = open_with_key(line.box, bytes.fromhex(str(entry["key"])), line.n, line.prev)
        except (AuditFormatError, ValueError, KeyError) as exc:
            problems.append(f"audit entry {line.n}: its disclosed key does not open it ({exc})")
            continue
        if sealed != entry.get("entry") or entry.get("hash") != line.hash:
            problems.append(f"audit entry {line.n}: {ENTRIES} shows something else than the sealed entry: the "
                            "readable copy was edited")
    return AuditVerdict(check, verify_key_fingerprint(key), problems)


def report(verdict: AuditVerdict) -> None:
    print(f"KEY server (audit log): fingerprint {verdict.fingerprint} (from {ENTRIES}); it must match the "
          "server key shown at the top of Admin → Audit on the dashboard")
    if not verdict.check.ok:
        print(f"PROBLEM audit: {verdict.check.summary()}")
    for problem in verdict.problems:
        print(f"PROBLEM {problem}")
    if verdict.ok:
        print(f"AUDIT {verdict.check.summary()}; signed up to entry {verdict.check.signed_upto}; every readable "
              "entry matches its sealed copy.")
