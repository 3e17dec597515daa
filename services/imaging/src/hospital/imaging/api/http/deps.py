"""Dependencies shared by the routers: the services and the caller's principal (one of the roles)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from hospital.chassis.security import Principal
from hospital.chassis.web import require_roles
from hospital.imaging.app.access_audit import AccessAudit
from hospital.imaging.app.services import Services

READ = ("radiographer", "radiologist", "doctor")
IMAGING_STAFF = ("radiographer", "radiologist")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_access(request: Request) -> AccessAudit:
    access: AccessAudit = request.app.state.access
    return access


def principal_for(*roles: str) -> Any:
    return Depends(require_roles(*roles))


Svc = Annotated[Services, Depends(get_services)]
Access = Annotated[AccessAudit, Depends(get_access)]
Reader = Annotated[Principal, principal_for(*READ)]
Staff = Annotated[Principal, principal_for(*IMAGING_STAFF)]
Reviewer = Annotated[Principal, principal_for("admin", *IMAGING_STAFF)]
Admin = Annotated[Principal, principal_for("admin")]
