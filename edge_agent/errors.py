"""Errors of the edge agent.

::

    CryoSpyError
    └── AgentError
        ├── ConfigError        a bad or missing config value (message names the key and the fix)
        ├── SourceError        the camera/stream/file cannot be opened or read
        └── UploadError        the server refused a clip for a reason retrying will not fix
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
