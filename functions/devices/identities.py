"""Per-device upload identities in the object store, as the device lifecycle needs them.

With identities (the runtime's default: :class:`cryospy.infra.device_identities.MinioDeviceIdentities`)
each camera's slots are signed by a MinIO user that may only write under its own storage token, so a stolen
camera's secret cannot write into another camera's clips. Without them (:class:`SharedUploadIdentity`, for a
store that has no per-user policies) every slot is signed by the shared presigner identity.
"""

from __future__ import annotations

from typing import Protocol


class DeviceIdentities(Protocol):
    def create(self, storage_token: str) -> tuple[str, str] | None:
        """A new identity writing only under ``clips/<storage_token>/``: (access key, secret), or None when
        slots are signed by the shared presigner."""
        ...

    def set_enabled(self, access: str, enabled: bool) -> None: ...

    def remove(self, access: str) -> None: ...


class SharedUploadIdentity:
    """No per-device identities: every device's slots are signed with the shared presigner."""

    def create(self, storage_token: str) -> None:
        return None

    def set_enabled(self, access: str, enabled: bool) -> None:
        return None

    def remove(self, access: str) -> None:
        return None
