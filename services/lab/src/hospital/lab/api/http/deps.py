"""Dependencies shared by the routers: the services and the caller (who must hold one of the roles)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from hospital.chassis.caller import Caller
from hospital.chassis.web import caller_for
from hospital.lab.app.services import Services

TECH = ("lab_technician",)
READERS = ("lab_technician", "doctor", "nurse")


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


Svc = Annotated[Services, Depends(get_services)]
Reader = Annotated[Caller, caller_for(*READERS)]
Tech = Annotated[Caller, caller_for(*TECH)]
Orderer = Annotated[Caller, caller_for("doctor", "lab_technician")]
Collector = Annotated[Caller, caller_for("nurse", "lab_technician")]
