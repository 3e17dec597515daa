"""The doctor's image viewer: a study opened from the chart (an imaging order's study), its series, and one
series scrolled slice by slice (keyboard, wheel, slider) with window/level (presets, inputs, drag).

Frames are imaging's WADO-RS rendered images, fetched by the web's proxy route as the signed-in user: the
EMR must have let the user read the chart the study belongs to (checked when the viewer opens, remembered
for the session, re-checked otherwise), imaging checks the user's role and audits every retrieval, and the
web records the viewing in its own audit trail. The browser never calls imaging."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hospital.contracts.emr.v1 import emr_pb2 as emr
from hospital.contracts.imaging.v1 import imaging_pb2 as img
from hospital.web import i18n
from hospital.web.adapters.backends import BackendRefused, BackendUnavailable
from hospital.web.api.deps import WebSession, caller, lang, render, screen, token, web

router = APIRouter(prefix="/doctor", tags=["doctor"])
Doctor = Annotated[WebSession, screen("doctor")]
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
# Window presets (centre, width) in Hounsfield units for CT; other modalities start with the file's window.
PRESETS = (
    ("soft", 40, 400),
    ("brain", 40, 80),
    ("lung", -600, 1500),
    ("bone", 400, 1800),
    ("abdomen", 60, 360),
)
VIEWPORT = "512,512"


def _uid(value: str) -> bool:
    return len(value) <= 64 and bool(_UID.match(value))


async def _study_of_chart(
    request: Request, sess: WebSession, encounter_id: str, study_uid: str
) -> tuple[emr.Chart, emr.ImagingStudy]:
    """The chart (read through the EMR, which checks and audits the access) and its study; LookupError
    when the study is not this chart's."""
    emr_api, tok = web(request).backends.emr, token(request, sess)
    enc = await emr_api.encounter(encounter_id, tok)
    chart = await emr_api.chart(enc.patient_id, encounter_id, tok)
    study = next((s for s in chart.studies if s.study_instance_uid == study_uid), None)
    if study is None:
        raise LookupError(study_uid)
    web(request).grants.grant(sess.id, encounter_id, study_uid)
    return chart, study


def _text(request: Request, exc: BackendRefused) -> str:
    key = f"err.{exc.code}"
    return i18n.translate(key, lang(request)) if i18n.has(key) else exc.message


@router.get(
    "/encounters/{encounter_id}/studies/{study_uid}",
    response_class=HTMLResponse,
    summary="The image viewer for a study of the chart",
)
async def viewer(
    request: Request, sess: Doctor, encounter_id: str, study_uid: str, series: str = ""
) -> Response:
    language = lang(request)
    if not _uid(study_uid) or (series and not _uid(series)):
        return _viewer_problem(request, encounter_id, 404, i18n.translate("viewer.not_found", language))
    try:
        chart, study = await _study_of_chart(request, sess, encounter_id, study_uid)
    except LookupError:
        return _viewer_problem(request, encounter_id, 404, i18n.translate("viewer.not_found", language))
    except BackendUnavailable as exc:
        return render(
            request, "doctor/viewer.html", status=503, down=exc.service, chart=None, enc_id=encounter_id
        )
    except BackendRefused as exc:
        return _viewer_problem(request, encounter_id, 403, _text(request, exc))
    imaging, tok = web(request).backends.imaging, token(request, sess)
    series_list: list[img.Series] = []
    current: img.Series | None = None
    instances: list[tuple[str, int, int]] = []
    down, refused = None, ""
    try:
        full = await imaging.study(study_uid, tok)
        series_list = sorted(full.series, key=lambda s: (s.series_number, s.series_instance_uid))
        current = next((s for s in series_list if s.series_instance_uid == series), None)
        if current is None and series_list:
            current = max(series_list, key=lambda s: s.instance_count)
        if current is not None:
            instances = await imaging.instances(study_uid, current.series_instance_uid, tok)
    except BackendUnavailable as exc:
        down = exc.service
    except BackendRefused as exc:
        refused = _text(request, exc)
    await web(request).accounts.audit(
        caller(request, sess),
        "imaging_study.view",
        "ImagingStudy",
        study_uid,
        chart.patient.id,
        encounter_id=encounter_id,
        series=current.series_instance_uid if current is not None else None,
        instances=len(instances),
    )
    return render(
        request,
        "doctor/viewer.html",
        chart=chart,
        study=study,
        enc_id=encounter_id,
        down=down,
        refused=refused,
        series_list=series_list,
        current=current,
        instances=instances,
        presets=PRESETS,
    )


def _viewer_problem(request: Request, encounter_id: str, status: int, message: str) -> Response:
    return render(
        request, "doctor/viewer.html", status=status, problem=message, chart=None, enc_id=encounter_id
    )


def _problem(request: Request, status: int, key: str, **values: object) -> JSONResponse:
    return JSONResponse(
        {"message": i18n.translate(key, lang(request), **values)},
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/encounters/{encounter_id}/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/rendered",
    summary="One frame as a JPEG rendered by imaging (WADO-RS) with the window asked for, as the user",
)
async def frame(
    request: Request,
    sess: Doctor,
    encounter_id: str,
    study_uid: str,
    series_uid: str,
    sop_uid: str,
    window: str = "",
    frame: int = 1,
) -> Response:
    if not all(_uid(u) for u in (study_uid, series_uid, sop_uid)) or not 1 <= frame <= 100_000:
        return _problem(request, 404, "viewer.not_found")
    params = {"viewport": VIEWPORT, "quality": "90"}
    if window:
        try:
            centre, width = (float(x) for x in window.split(","))
        except ValueError:
            return _problem(request, 422, "viewer.err.window")
        if not (-32768 <= centre <= 65535 and 1 <= width <= 65536):
            return _problem(request, 422, "viewer.err.window")
        params["window"] = f"{centre:g},{width:g}"
    w = web(request)
    if not w.grants.allowed(sess.id, encounter_id, study_uid):
        try:
            await _study_of_chart(request, sess, encounter_id, study_uid)
        except LookupError:
            return _problem(request, 404, "viewer.not_found")
        except BackendUnavailable as exc:
            return _problem(
                request, 503, "unavailable", service=i18n.translate(f"svc.{exc.service}", lang(request))
            )
        except BackendRefused as exc:
            return JSONResponse({"message": _text(request, exc)}, status_code=403)
    path = f"/studies/{study_uid}/series/{series_uid}/instances/{sop_uid}/frames/{frame}/rendered"
    try:
        image = await w.backends.imaging.dicomweb(path, token(request, sess), "image/jpeg", params)
    except BackendUnavailable as exc:
        return _problem(
            request, 503, "unavailable", service=i18n.translate(f"svc.{exc.service}", lang(request))
        )
    except BackendRefused as exc:
        key = f"err.{exc.code}"
        message = i18n.translate(key, lang(request)) if i18n.has(key) else exc.message
        status = 404 if exc.status == "404" else 422
        return JSONResponse({"message": message, "code": exc.code}, status_code=status)
    return Response(
        image,
        media_type="image/jpeg",
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )
