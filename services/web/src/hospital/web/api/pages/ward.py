"""Ward: the bed board, every bed of the ward and who lies in it (read-only here; admit, transfer and
discharge are still done through admissions' API)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, render, screen, token, web

router = APIRouter(prefix="/ward", tags=["ward"])
Ward = Annotated[WebSession, screen("ward")]


@router.get("", response_class=HTMLResponse, summary="The bed board")
async def page(request: Request, sess: Ward, ward: str = "") -> Response:
    down, message, beds = None, "", []
    try:
        beds = await web(request).backends.admissions.beds(ward.strip().upper(), token(request, sess))
    except BackendUnavailable as exc:
        down = exc.service
    except BackendRefused as exc:
        message = exc.message
    wards: OrderedDict[str, dict] = OrderedDict()
    for b in beds:
        w = wards.setdefault(
            b.ward_code, {"code": b.ward_code, "name": b.ward_name, "beds": [], "occupied": 0}
        )
        w["beds"].append(b)
        w["occupied"] += int(b.occupied)
    return render(request, "ward.html", wards=list(wards.values()), down=down, message=message, ward=ward)
