"""Who is calling a use case: the authenticated principal and where the call came from. Use cases take
a Caller to write audit entries and to stamp events with the actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hospital.chassis import purpose as purpose_of_use
from hospital.chassis.audit import AuditEntry
from hospital.chassis.security import Principal
from hospital.contracts.common.v1 import types_pb2


@dataclass(frozen=True)
class Caller:
    principal: Principal
    source: str  # client address, or the calling service / protocol peer
    # Purpose of use stated by the request (X-Purpose-Of-Use / gRPC metadata); None: the role's default
    purpose: str | None = field(default_factory=purpose_of_use.current)

    @property
    def subject(self) -> str:
        return self.principal.subject

    def actor(self) -> types_pb2.Actor:
        return types_pb2.Actor(
            subject=self.principal.subject, display=self.principal.name, roles=sorted(self.principal.roles)
        )

    def audit(
        self, action: str, resource_type: str, resource_id: str | None, patient_id: str | None, **detail: Any
    ) -> AuditEntry:
        return AuditEntry(
            actor=self.principal.subject,
            actor_roles=tuple(sorted(self.principal.roles)),
            action=action,
            resource_type=resource_type,
            resource_id=resource_id,
            patient_id=patient_id,
            source=self.source,
            detail=detail,
            purpose=self.purpose or purpose_of_use.default_for(self.principal.roles),
        )
