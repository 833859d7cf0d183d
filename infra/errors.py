"""Errors of the infrastructure layer (MinIO build/start/bootstrap and the runtime).

::

    CryoSpyError
    └── InfraError
        ├── MinioUnavailable     no binary and no way to build one
        ├── MinioStartError      the server did not come up (port, disk, credentials)
        ├── StorageError         an S3 call failed for a reason the user must act on
        └── PortInUse            a port the command needs is taken
"""

from cryospy.common.errors import CryoSpyError


class InfraError(CryoSpyError):
    exit_code = 3


class MinioUnavailable(InfraError):
    pass


class MinioStartError(InfraError):
    pass


class StorageError(InfraError):
    pass


class PortInUse(InfraError):
    pass
