"""Errors of the edge agent.

::

    CryoSpyError
    └── AgentError
        ├── ConfigError        a bad or missing config value (message names the key and the fix)
        ├── SourceError        the camera/stream/file cannot be opened or read
        ├── UploadError        the server refused a clip for a reason retrying will not fix
        └── SigningKeyConflict the server holds a different signing key for this device: the agent stops
"""

from cryospy.common.errors import CryoSpyError


class AgentError(CryoSpyError):
    exit_code = 4


class ConfigError(AgentError):
    exit_code = 2


class SourceError(AgentError):
    pass


class UploadError(AgentError):
    pass


class SigningKeyConflict(AgentError):
    """Registering the signing key was refused (409): the device was enrolled with, or has registered, another
    key. Recording on would only fill the spool with clips the server can never accept."""

    exit_code = 7
