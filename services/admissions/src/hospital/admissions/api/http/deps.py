"""Dependencies shared by the routers: the services and the caller (who must hold one of the roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hospital.admissions.app.services import Services
from hospital.chassis.caller import Caller
from hospital.chassis.web import caller_for

CLINICAL = ("receptionist", "nurse", "doctor", "lab_technician", "radiographer", "radiologist", "cashier")
ANY_ROLE = (*CLINICAL, "admin", "auditor")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]
Clinical = Annotated[Caller, caller_for(*CLINICAL)]
Anyone = Annotated[Caller, caller_for(*ANY_ROLE)]
Receptionist = Annotated[Caller, caller_for("receptionist")]
