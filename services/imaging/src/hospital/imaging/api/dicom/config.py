"""Configuration of the DICOM server (PACS gateway)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

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
    With `strict_ae` an unlisted calling AE title is rejected at association
    time; without it any calling AE is accepted.
    """

    ae_title: str = "HOSPITAL_PACS"
    host: str = "0.0.0.0"
    port: int = 11112
    strict_ae: bool = True
    allowed_aes: Mapping[str, tuple[str, int]] = field(default_factory=dict)
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
        if not 0 <= self.port <= 65535:
            raise ValueError(f"invalid port: {self.port}")
        if self.max_associations < 1:
            raise ValueError("max_associations must be at least 1")
