"""The root of every CryoSpy exception.

Each package hangs its own small hierarchy below :class:`CryoSpyError`, so the command line can turn any
expected failure into a one-line message and a meaningful exit code instead of a traceback::

    CryoSpyError
    ├── cryospy.common.sealed.SealedFormatError   (any sealed object that fails to open or verify)
    ├── cryospy.common.keys.KeyStoreError          (wrong passphrase, unknown key id, locked store)
    ├── cryospy.infra.errors.InfraError            (MinIO build/start/bootstrap, runtime)
    ├── cryospy.functions.errors.ApiError          (HTTP-facing validation and auth failures)
    └── cryospy.edge_agent.errors.AgentError       (capture, encoding, upload)
"""


class CryoSpyError(Exception):
    """Base class: the message says what went wrong and what to do about it."""

    exit_code = 1
