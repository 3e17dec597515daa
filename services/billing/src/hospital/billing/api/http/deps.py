"""Dependencies shared by the routers: the services and the caller (who must hold one of the roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hospital.billing.app.services import Services
from hospital.chassis.caller import Caller
from hospital.chassis.web import caller_for

CLINICAL_READ = ("receptionist", "nurse", "doctor")
READ = ("cashier", "admin", "auditor", *CLINICAL_READ)
DESK = ("cashier", "admin")
OFFICE_READ = ("cashier", "admin", "auditor")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]
Reader = Annotated[Caller, caller_for(*READ)]
Desk = Annotated[Caller, caller_for(*DESK)]
Office = Annotated[Caller, caller_for(*OFFICE_READ)]
Admin = Annotated[Caller, caller_for("admin")]
Diagnoser = Annotated[Caller, caller_for("doctor", "cashier", "admin")]
