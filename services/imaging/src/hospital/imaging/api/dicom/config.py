"""Configuration of the DICOM server (PACS gateway)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from hospital.imaging.api.dicom.access import AccessPolicy

_MAX_AE_TITLE = 16


def _check_ae_title(title: str) -> str:
    """AE titles are at most 16 characters of the default repertoire; padding is not significant."""
    stripped = title.strip()
    if not stripped or len(stripped) > _MAX_AE_TITLE or not stripped.isascii() or "\\" in stripped:
        raise ValueError(f"invalid AE title: {title!r}")
    return stripped


@dataclass(frozen=True, slots=True)
class DicomConfig:
    """Settings of the DICOM listener.

    `allowed_aes` maps each known peer AE title to its ``(host, port)``: the
    allow-list for incoming associations and, later, the C-MOVE destinations.
    With `strict_ae` an unlisted calling AE title, or a listed one calling from
    another host, is rejected at association time; without it any calling AE is
    accepted. `permissions` limits what a listed AE may do (access.py).
    """

    ae_title: str = "HOSPITAL_PACS"
    host: str = "127.0.0.1"
    port: int = 11112
    strict_ae: bool = True
    allowed_aes: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    permissions: Mapping[str, frozenset[str]] = field(default_factory=dict)
    max_associations: int = 32
    #: Seconds without any network traffic before an association is aborted.
    network_timeout: float = 60.0
    #: Seconds to wait for association negotiation messages.
    acse_timeout: float = 30.0
    #: Seconds to wait for the rest of a DIMSE message.
    dimse_timeout: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ae_title", _check_ae_title(self.ae_title))
        allowed = {
            _check_ae_title(title): (host, int(port)) for title, (host, port) in self.allowed_aes.items()
        }
        object.__setattr__(self, "allowed_aes", MappingProxyType(allowed))
        granted = {_check_ae_title(title): frozenset(p) for title, p in self.permissions.items()}
        object.__setattr__(self, "permissions", MappingProxyType(granted))
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port: {self.port}")
        if self.max_associations < 1:
            raise ValueError("max_associations must be at least 1")

    def policy(self) -> AccessPolicy:
        return AccessPolicy(self.strict_ae, self.allowed_aes, self.permissions)
