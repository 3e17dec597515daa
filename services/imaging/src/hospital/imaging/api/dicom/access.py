"""Who may associate with the gateway, and what each peer may do (ADR 0307).

* **Admission** (A-ASSOCIATE): in strict mode the calling AE title must be listed in ``KNOWN_AES`` *and*
  the connection must come from that AE's host (an IP address, or a name resolved at association time).
  Anything else gets A-ASSOCIATE-RJ 1/1/3 (calling AE title not recognised), logged with the reason.
* **Permissions** (presentation contexts): ``AE_PERMISSIONS="CT_HUE=store+worklist,VIEWER=query+retrieve"``
  gives a listed AE only some services; the presentation contexts of the others are refused (result 1,
  user rejection), so e.g. ``findscu`` from a store-only modality gets no accepted context. A listed AE
  without an entry, and (strict mode off) an unlisted one, may use every service.

=========== ===========================================================================
permission  presentation contexts (abstract syntaxes)
=========== ===========================================================================
store       every Storage SOP class (C-STORE to us) and Storage Commitment Push Model
query       Patient Root and Study Root C-FIND
retrieve    Patient Root and Study Root C-MOVE and C-GET (and, for C-GET, the Storage SOP classes in
            which the peer takes the SCP role)
worklist    Modality Worklist C-FIND and Modality Performed Procedure Step
=========== ===========================================================================

Verification (C-ECHO) is always allowed to an admitted peer.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Mapping

from pynetdicom import AllStoragePresentationContexts
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

log = logging.getLogger(__name__)

PERMISSIONS: frozenset[str] = frozenset({"store", "query", "retrieve", "worklist"})
VERIFICATION = "1.2.840.10008.1.1"
STORAGE: frozenset[str] = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)
_SERVICE_OF: dict[str, str] = {
    **dict.fromkeys(STORAGE, "store"),
    str(PatientRootQueryRetrieveInformationModelFind): "query",
    str(StudyRootQueryRetrieveInformationModelFind): "query",
    str(PatientRootQueryRetrieveInformationModelMove): "retrieve",
    str(StudyRootQueryRetrieveInformationModelMove): "retrieve",
    str(PatientRootQueryRetrieveInformationModelGet): "retrieve",
    str(StudyRootQueryRetrieveInformationModelGet): "retrieve",
    str(ModalityWorklistInformationFind): "worklist",
    str(ModalityPerformedProcedureStep): "worklist",
    "1.2.840.10008.1.20.1": "store",  # Storage Commitment Push Model: asked by those who store (ADR 0315)
}
_GET_MODELS = frozenset(
    {str(PatientRootQueryRetrieveInformationModelGet), str(StudyRootQueryRetrieveInformationModelGet)}
)


def parse_permissions(value: str) -> dict[str, frozenset[str]]:
    """``"AE=store+query,AE2=retrieve"`` -> ``{"AE": {"store", "query"}, ...}``; ValueError on a bad entry."""
    out: dict[str, frozenset[str]] = {}
    for raw in value.replace(";", ",").split(","):
        item = raw.strip()
        if not item:
            continue
        title, sep, names = item.partition("=")
        granted = frozenset(n.strip().lower() for n in names.replace("|", "+").split("+") if n.strip())
        if not sep or not title.strip() or not granted:
            raise ValueError(f"ae_permissions entry {item!r} is not AE=permission+permission")
        unknown = granted - PERMISSIONS
        if unknown:
            raise ValueError(
                f"ae_permissions entry {item!r}: unknown permission(s) {sorted(unknown)}; "
                f"use {sorted(PERMISSIONS)}"
            )
        out[title.strip()] = granted
    return out


def service_of(abstract_syntax: str) -> str | None:
    """The permission an abstract syntax needs; None for Verification (always allowed) or unknown ones."""
    return _SERVICE_OF.get(abstract_syntax)


_RESOLVED: dict[str, tuple[float, frozenset[str]]] = {}
_RESOLVE_TTL = 60.0


def _addresses(host: str) -> frozenset[str]:
    """The IP addresses of a KNOWN_AES host (a literal, or a name resolved and cached for a minute)."""
    try:
        return frozenset({str(ipaddress.ip_address(host))})
    except ValueError:
        pass
    now = time.monotonic()
    cached = _RESOLVED.get(host)
    if cached is not None and now - cached[0] < _RESOLVE_TTL:
        return cached[1]
    try:
        found = frozenset(str(ipaddress.ip_address(info[4][0])) for info in socket.getaddrinfo(host, None))
    except (OSError, ValueError) as exc:
        log.warning("KNOWN_AES host %r does not resolve (%s): its AE cannot associate", host, exc)
        found = frozenset()
    _RESOLVED[host] = (now, found)
    return found


def _canonical_address(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class AccessPolicy:
    """Admission and per-AE permissions, shared by the serve process and the receiver processes."""

    def __init__(
        self, strict: bool, peers: Mapping[str, tuple[str, int]], permissions: Mapping[str, Iterable[str]]
    ) -> None:
        self.strict = strict
        self.peers = dict(peers)
        self.permissions = {ae: frozenset(p) for ae, p in permissions.items()}

    def refusal(self, calling_ae: str, peer_address: str) -> str | None:
        """Why an association from `calling_ae` at `peer_address` is refused; None if it is admitted."""
        peer = self.peers.get(calling_ae)
        if peer is None:
            return "calling AE title not in the allow-list (strict mode)" if self.strict else None
        if self.strict and _canonical_address(peer_address) not in _addresses(peer[0]):
            return f"calling AE title is listed for host {peer[0]}, not {peer_address} (strict mode)"
        return None

    def granted(self, calling_ae: str) -> frozenset[str]:
        if calling_ae in self.permissions:
            return self.permissions[calling_ae]
        return PERMISSIONS

    def allows(
        self,
        granted: frozenset[str],
        abstract_syntax: str,
        *,
        peer_is_storage_scp: bool = False,
        get_proposed: bool = False,
    ) -> bool:
        """May a peer holding `granted` use this presentation context? A Storage context in which the peer
        is the SCP (C-GET sub-operations) follows "retrieve" when a C-GET model is also proposed."""
        service = service_of(abstract_syntax)
        if service is None:
            return True
        if service == "store" and peer_is_storage_scp and get_proposed and "retrieve" in granted:
            return True
        return service in granted

    @staticmethod
    def proposes_get(abstract_syntaxes: Iterable[str]) -> bool:
        return any(s in _GET_MODELS for s in abstract_syntaxes)
