"""The audit log: who did what on this deployment, sealed and hash-chained (``docs/audit.md``)."""
