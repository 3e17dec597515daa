"""DICOMweb under /dicomweb: QIDO-RS, WADO-RS (instances, series, studies, metadata, rendered,
thumbnail) and STOW-RS, over the same index and object storage as the DICOM interface."""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import pydicom
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydicom.dataset import Dataset
from starlette.datastructures import QueryParams

from hospital.chassis.errors import DomainError, Invalid, NotFound
from hospital.chassis.fields import INT32_MAX
from hospital.chassis.security import Principal
from hospital.chassis.web import client_address, require_roles
from hospital.imaging.app.access_audit import AccessAudit, http_entry
from hospital.imaging.app.query import KEYS, QueryError, find, indexed_instances, instances_for
from hospital.imaging.app.stow import StowBody, StowMalformed, StowTooLarge, stow_parts
from hospital.imaging.domain.rendering import (
    MEDIA,
    NoSuchAttribute,
    NoSuchFrame,
    NotRenderable,
    RenderOptions,
    bulk_value,
    metadata_json,
    parse_viewport,
    parse_window,
    raw_frames,
    render,
)

log = logging.getLogger(__name__)


def _remember(dependency: Any) -> Any:
    """The role check, keeping the principal on the request for the access audit (app/access_audit.py)."""

    async def remember(request: Request, who: Principal = Depends(dependency)) -> Principal:
        request.state.principal = who
        return who

    return remember


READ = _remember(require_roles("radiographer", "radiologist", "doctor"))
WRITE = _remember(require_roles("radiographer", "radiologist"))
DICOM_JSON = "application/dicom+json"
# WADO-RS retrieve: object reads in flight ahead of the one being written to the response.
RETRIEVE_AHEAD = 8
_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")

# Attributes returned by default (PS3.18 Table 6.7.1-2), plus what the level's index holds.
DEFAULT = {
    "STUDY": [
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    "SERIES": [
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
        "StudyInstanceUID",
    ],
    "IMAGE": [
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "SeriesInstanceUID",
        "StudyInstanceUID",
    ],
}


def _keyword(name: str) -> str:
    if _TAG.match(name):
        return pydicom.datadict.keyword_for_tag(int(name, 16)) or name
    return name


def _query(params: QueryParams, level: str) -> tuple[dict[str, str], int, int, list[str]]:
    filters: dict[str, str] = {}
    include: list[str] = []
    limit, offset = 100, 0
    for name, value in params.multi_items():
        if name == "limit":
            limit = _int(value, "limit")
        elif name == "offset":
            offset = _int(value, "offset")
        elif name == "includefield":
            include += [_keyword(v) for v in value.split(",") if v and v != "all"]
            if value == "all":
                include += list(KEYS[level])
        elif name in ("fuzzymatching",):
            continue
        else:
            kw = _keyword(name)
            if kw not in KEYS[level]:
                raise Invalid(
                    "qido.unsupported_key", f"{name} is not a supported query key at this level", field=name
                )
            filters[kw] = value
    return filters, min(limit, 1000), offset, include


def _int(value: str, name: str) -> int:
    if not value.strip().isdigit() or len(value.strip()) > 10:
        raise Invalid("qido.invalid", f"{name} must be a whole number from 0 to {INT32_MAX}", field=name)
    n = int(value)
    if n > INT32_MAX:
        raise Invalid("qido.invalid", f"{name} must be a whole number from 0 to {INT32_MAX}", field=name)
    return n


_UID_WILDCARD = re.compile(r"[*?\\]")


def _retrieve_filters(filters: dict[str, str]) -> dict[str, str]:
    """WADO-RS path segments name UIDs exactly: no wildcard, no list, at most 64 characters."""
    for key, uid in filters.items():
        if not uid or len(uid) > 64 or _UID_WILDCARD.search(uid):
            raise Invalid(
                "dicomweb.invalid_uid",
                f"{key} must be one UID (at most 64 characters, no wildcard)",
                field=key,
            )
    return filters


def _json(rows: list[dict[str, Any]], keys: list[str], base_url: str) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        for kw in keys:
            if kw in row:
                value = row[kw]
                try:
                    setattr(ds, kw, value if value is not None else "")
                except (ValueError, TypeError):
                    setattr(ds, kw, "")
        study = row.get("StudyInstanceUID")
        if study:
            ds.RetrieveURL = f"{base_url}/studies/{study}"
        out.append(ds.to_json_dict())
    return out


class RenderedCache:
    """Rendered images by (instance, digest, frame, options), least recently used out first, up to
    ``limit`` bytes; 0 = off (ADR 0319: measured before it was kept). The digest in the key makes a
    replaced instance (a conflict resolved ``take_new``) render again; a deleted one is never looked up
    (the index no longer finds it)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self._items: OrderedDict[Any, bytes] = OrderedDict()

    def get(self, key: Any) -> bytes | None:
        if not self.limit:
            return None
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: bytes) -> None:
        if not self.limit or len(value) > self.limit // 4 or key in self._items:
            return
        self._items[key] = value
        self.size += len(value)
        while self.size > self.limit:
            _, old = self._items.popitem(last=False)
            self.size -= len(old)


def _multipart(parts: list[bytes], content_type: str) -> Response:
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        chunks.append(part)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return Response(
        b"".join(chunks),
        media_type=None,
        headers={"Content-Type": f'multipart/related; type="{content_type}"; boundary={boundary}'},
    )


def build_dicomweb(services: Any) -> APIRouter:
    r = APIRouter(prefix="/dicomweb", tags=["dicomweb"])
    rt, s = services.rt, services.settings

    audit = AccessAudit(rt)

    async def audited(
        request: Request, action: str, resource_id: str | None, rows: list[Any], **detail: Any
    ) -> None:
        await audit.record(
            http_entry(request.state.principal, client_address(request), action, resource_id, rows, **detail)
        )

    async def wait_indexed(uids: set[str], timeout: float) -> bool:
        """Until every instance is indexed (the pipeline reports each commit), or `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        progressed = asyncio.Event()
        services.pipeline.on_indexed.append(progressed.set)
        try:
            while True:
                progressed.clear()  # before looking, so a commit in between is not missed
                if not uids - await indexed_instances(rt.db, uids):
                    return True
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                try:
                    await asyncio.wait_for(progressed.wait(), remaining)
                except TimeoutError:
                    pass
        finally:
            services.pipeline.on_indexed.remove(progressed.set)

    def base(request: Request) -> str:
        """The service's DICOMweb root as the client sees it, for Retrieve URLs: the configured public URL,
        else the request's scheme and Host; a Host without a port (dicomweb-client sends one) gets the
        port the request arrived on."""
        if s.dicomweb_base_url:
            return s.dicomweb_base_url.rstrip("/")
        url = request.base_url
        server = request.scope.get("server")
        if url.port is None and server and server[1] not in (None, 80 if url.scheme == "http" else 443):
            url = url.replace(port=server[1])
        return str(url).rstrip("/") + "/dicomweb"

    async def qido(request: Request, level: str, fixed: dict[str, str]) -> Response:
        filters, limit, offset, include = _query(request.query_params, level)
        filters.update(fixed)
        try:
            rows = await find(rt.db, level, filters, limit=limit, offset=offset)
        except QueryError as exc:
            raise Invalid("qido.invalid", str(exc)) from None
        keys = list(dict.fromkeys([*DEFAULT[level], *include, *fixed]))
        await audited(
            request,
            "imaging_study.search",
            fixed.get("StudyInstanceUID"),
            rows,
            level=level.lower(),
            query=dict(request.query_params),
        )
        if not rows:
            return Response(status_code=204)
        return JSONResponse(_json(rows, keys, base(request)), media_type=DICOM_JSON)

    @r.get("/studies", dependencies=[Depends(READ)])
    async def search_studies(request: Request) -> Response:
        return await qido(request, "STUDY", {})

    @r.get("/series", dependencies=[Depends(READ)])
    async def search_all_series(request: Request) -> Response:
        return await qido(request, "SERIES", {})

    @r.get("/instances", dependencies=[Depends(READ)])
    async def search_all_instances(request: Request) -> Response:
        return await qido(request, "IMAGE", {})

    @r.get("/studies/{study}/series", dependencies=[Depends(READ)])
    async def search_series(request: Request, study: str) -> Response:
        return await qido(request, "SERIES", {"StudyInstanceUID": study})

    @r.get("/studies/{study}/instances", dependencies=[Depends(READ)])
    async def search_study_instances(request: Request, study: str) -> Response:
        return await qido(request, "IMAGE", {"StudyInstanceUID": study})

    @r.get("/studies/{study}/series/{series}/instances", dependencies=[Depends(READ)])
    async def search_instances(request: Request, study: str, series: str) -> Response:
        return await qido(request, "IMAGE", {"StudyInstanceUID": study, "SeriesInstanceUID": series})

    async def objects(request: Request, filters: dict[str, str], what: str) -> list[bytes]:
        return (await objects_with_rows(request, filters, what))[1]

    async def matching(request: Request, filters: dict[str, str], what: str) -> list[dict[str, Any]]:
        """The matching instances' index rows, the access audited before anything is read."""
        return (await objects_with_rows(request, filters, what, fetch=False))[0]

    async def objects_with_rows(
        request: Request, filters: dict[str, str], what: str, *, fetch: bool = True
    ) -> tuple[list[dict[str, Any]], list[bytes]]:
        rows = await instances_for(rt.db, _retrieve_filters(filters))
        if not rows:
            raise NotFound("dicomweb.not_found", "no matching instances")
        await audited(
            request,
            "imaging_study.retrieve",
            filters.get("StudyInstanceUID"),
            rows,
            what=what,
            series=filters.get("SeriesInstanceUID"),
            instance=filters.get("SOPInstanceUID"),
        )
        if not fetch:
            return rows, []
        sem = asyncio.Semaphore(8)

        async def get(key: str) -> bytes:
            async with sem:
                return await rt.store.get_bytes(s.bucket, key)

        return rows, list(await asyncio.gather(*(get(row["object_key"]) for row in rows)))

    async def metadata(request: Request, filters: dict[str, str]) -> Response:
        """DICOM JSON; pixel data and binary values over 1 KiB by BulkDataURI (the instance's
        ``/bulkdata/<path>`` resource)."""
        rows, blobs = await objects_with_rows(request, filters, "metadata")
        root = base(request)

        def build() -> list[dict[str, Any]]:
            return [
                metadata_json(
                    blob,
                    f"{root}/studies/{row['StudyInstanceUID']}/series/{row['SeriesInstanceUID']}"
                    f"/instances/{row['SOPInstanceUID']}",
                )
                for row, blob in zip(rows, blobs, strict=True)
            ]

        return JSONResponse(await asyncio.to_thread(build), media_type=DICOM_JSON)

    async def instances(request: Request, filters: dict[str, str]) -> Response:
        """WADO-RS of stored instances as they are, streamed: each object is written to the response as
        soon as it and those before it are read (up to RETRIEVE_AHEAD reads in flight), so a whole
        series is never held in memory nor copied into one body (ADR 0320). The first object is read
        before the 200 is sent, so an unreachable store still gets an error answer; a later failure
        ends the body without its closing boundary, which clients see as a truncated response."""
        rows = await matching(request, filters, "instances")
        keys = [str(row["object_key"]) for row in rows]
        boundary = uuid.uuid4().hex
        head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        ahead: collections.deque[asyncio.Task[bytes]] = collections.deque()
        rest = iter(keys)

        def fill() -> None:
            while len(ahead) < RETRIEVE_AHEAD:
                key = next(rest, None)
                if key is None:
                    return
                ahead.append(asyncio.ensure_future(rt.store.get_bytes(s.bucket, key)))

        fill()
        try:
            first = await ahead.popleft()
        except BaseException:
            for task in ahead:
                task.cancel()
            raise

        async def body() -> AsyncIterator[bytes]:
            try:
                blob: bytes | None = first
                while blob is not None:
                    fill()
                    # one chunk per object: each chunk is a trip through the ASGI middleware stack
                    yield b"".join((head, blob, b"\r\n"))
                    blob = await ahead.popleft() if ahead else None
                yield f"--{boundary}--\r\n".encode()
            finally:
                for task in ahead:
                    task.cancel()

        return StreamingResponse(
            body(),
            media_type=None,
            headers={"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'},
        )

    @r.get("/studies/{study}", dependencies=[Depends(READ)])
    async def retrieve_study(request: Request, study: str) -> Response:
        return await instances(request, {"StudyInstanceUID": study})

    @r.get("/studies/{study}/series/{series}", dependencies=[Depends(READ)])
    async def retrieve_series(request: Request, study: str, series: str) -> Response:
        return await instances(request, {"StudyInstanceUID": study, "SeriesInstanceUID": series})

    @r.get("/studies/{study}/series/{series}/instances/{sop}", dependencies=[Depends(READ)])
    async def retrieve_instance(request: Request, study: str, series: str, sop: str) -> Response:
        return await instances(
            request, {"StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": sop}
        )

    @r.get("/studies/{study}/metadata", dependencies=[Depends(READ)])
    async def study_metadata(request: Request, study: str) -> Response:
        return await metadata(request, {"StudyInstanceUID": study})

    @r.get("/studies/{study}/series/{series}/metadata", dependencies=[Depends(READ)])
    async def series_metadata(request: Request, study: str, series: str) -> Response:
        return await metadata(request, {"StudyInstanceUID": study, "SeriesInstanceUID": series})

    @r.get("/studies/{study}/series/{series}/instances/{sop}/metadata", dependencies=[Depends(READ)])
    async def instance_metadata(request: Request, study: str, series: str, sop: str) -> Response:
        return await metadata(request, instance(study, series, sop))

    def render_options(request: Request, thumbnail: bool) -> RenderOptions:
        q = request.query_params
        accept = [
            a.split(";")[0].strip().lower() for a in request.headers.get("accept", "").split(",") if a.strip()
        ]
        media = next((a for a in accept if a in MEDIA), None)
        if media is None:
            if accept and not any(a in ("*/*", "image/*") for a in accept):
                raise DomainError(
                    "dicomweb.not_acceptable", "rendered media types: image/jpeg, image/png", status=406
                )
            media = "image/jpeg"
        try:
            window = parse_window(q["window"]) if q.get("window") else None
            viewport = (
                parse_viewport(q["viewport"]) if q.get("viewport") else ((128, 128) if thumbnail else None)
            )
            quality = int(q.get("quality", "90"))
        except ValueError as exc:
            raise Invalid("dicomweb.render_parameters", str(exc)) from None
        if not 1 <= quality <= 100:
            raise Invalid("dicomweb.render_parameters", "quality must be 1 to 100", field="quality")
        return RenderOptions(window=window, viewport=viewport, quality=quality, media_type=media)

    def frame_numbers(frames: str) -> list[int]:
        parts = [p.strip() for p in frames.split(",")]
        if not parts or len(parts) > 1000 or not all(p.isdigit() and 0 < len(p) <= 6 for p in parts):
            raise Invalid("dicomweb.frames", "frames: a comma-separated list of frame numbers (from 1)")
        return [int(p) for p in parts]

    cache = RenderedCache(s.rendered_cache_bytes)

    async def rendered_image(
        request: Request, filters: dict[str, str], frame: int, thumbnail: bool
    ) -> Response:
        options = render_options(request, thumbnail)
        rows, _ = await objects_with_rows(
            request, filters, "thumbnail" if thumbnail else "rendered", fetch=False
        )
        key = (rows[0]["SOPInstanceUID"], rows[0]["digest"], frame, options)
        image = cache.get(key)
        if image is not None:
            return Response(image, media_type=options.media_type)
        blob = await rt.store.get_bytes(s.bucket, rows[0]["object_key"])
        try:
            image = await asyncio.to_thread(render, blob, frame, options)
        except NoSuchFrame as exc:
            raise NotFound("dicomweb.frame_not_found", str(exc)) from None
        except NotRenderable as exc:
            raise Invalid("dicomweb.not_renderable", f"instance cannot be rendered: {exc}") from None
        cache.put(key, image)
        return Response(image, media_type=options.media_type)

    def instance(study: str, series: str, sop: str) -> dict[str, str]:
        return {"StudyInstanceUID": study, "SeriesInstanceUID": series, "SOPInstanceUID": sop}

    @r.get("/studies/{study}/series/{series}/instances/{sop}/rendered", dependencies=[Depends(READ)])
    async def rendered(request: Request, study: str, series: str, sop: str) -> Response:
        return await rendered_image(request, instance(study, series, sop), 1, False)

    @r.get("/studies/{study}/series/{series}/instances/{sop}/thumbnail", dependencies=[Depends(READ)])
    async def thumbnail(request: Request, study: str, series: str, sop: str) -> Response:
        return await rendered_image(request, instance(study, series, sop), 1, True)

    @r.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/rendered",
        dependencies=[Depends(READ)],
    )
    async def frame_rendered(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        numbers = frame_numbers(frames)
        if len(numbers) != 1:
            raise Invalid("dicomweb.frames", "a rendered frame request names one frame")
        return await rendered_image(request, instance(study, series, sop), numbers[0], False)

    @r.get(
        "/studies/{study}/series/{series}/instances/{sop}/frames/{frames}/thumbnail",
        dependencies=[Depends(READ)],
    )
    async def frame_thumbnail(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        numbers = frame_numbers(frames)
        if len(numbers) != 1:
            raise Invalid("dicomweb.frames", "a thumbnail names one frame")
        return await rendered_image(request, instance(study, series, sop), numbers[0], True)

    async def representative(request: Request, study: str, series: str) -> str:
        """The middle instance of a series (by Instance Number), the one its rendering and thumbnail show."""
        rows = await instances_for(
            rt.db, _retrieve_filters({"StudyInstanceUID": study, "SeriesInstanceUID": series})
        )
        if not rows:
            raise NotFound("dicomweb.not_found", "no matching instances")
        return str(rows[len(rows) // 2]["SOPInstanceUID"])

    @r.get("/studies/{study}/series/{series}/rendered", dependencies=[Depends(READ)])
    async def series_rendered(request: Request, study: str, series: str) -> Response:
        sop = await representative(request, study, series)
        return await rendered_image(request, instance(study, series, sop), 1, False)

    @r.get("/studies/{study}/series/{series}/thumbnail", dependencies=[Depends(READ)])
    async def series_thumbnail(request: Request, study: str, series: str) -> Response:
        sop = await representative(request, study, series)
        return await rendered_image(request, instance(study, series, sop), 1, True)

    @r.get("/studies/{study}/series/{series}/instances/{sop}/frames/{frames}", dependencies=[Depends(READ)])
    async def frames(request: Request, study: str, series: str, sop: str, frames: str) -> Response:
        """Bulk pixel data: each frame decoded to native little-endian bytes (application/octet-stream)."""
        numbers = frame_numbers(frames)
        blob = (await objects(request, instance(study, series, sop), "frames"))[0]
        try:
            parts = await asyncio.to_thread(raw_frames, blob, numbers)
        except NoSuchFrame as exc:
            raise NotFound("dicomweb.frame_not_found", str(exc)) from None
        except NotRenderable as exc:
            raise Invalid("dicomweb.not_decodable", str(exc)) from None
        return _multipart(parts, "application/octet-stream")

    @r.get(
        "/studies/{study}/series/{series}/instances/{sop}/bulkdata/{path:path}", dependencies=[Depends(READ)]
    )
    async def bulkdata(request: Request, study: str, series: str, sop: str, path: str) -> Response:
        """A BulkDataURI of the metadata: the attribute's value as stored (multipart
        ``application/octet-stream``); pixel data as native little-endian pixels, every frame."""
        blob = (await objects(request, instance(study, series, sop), "bulkdata"))[0]
        try:
            value = await asyncio.to_thread(bulk_value, blob, path)
        except NoSuchAttribute as exc:
            raise NotFound("dicomweb.bulkdata_not_found", str(exc)) from None
        except NotRenderable as exc:
            raise Invalid("dicomweb.not_decodable", str(exc)) from None
        return _multipart([value], "application/octet-stream")

    @r.post("/studies", dependencies=[Depends(WRITE)])
    async def stow(request: Request) -> Response:
        return await _stow(request, None)

    @r.post("/studies/{study}", dependencies=[Depends(WRITE)])
    async def stow_study(request: Request, study: str) -> Response:
        return await _stow(request, study)

    async def _stow(request: Request, study: str | None) -> Response:
        content_type = request.headers.get("content-type", "")
        m = re.search(r'boundary="?([^";]+)"?', content_type)
        if not content_type.lower().startswith("multipart/related") or not m:
            raise Invalid("stow.content_type", "STOW-RS needs Content-Type multipart/related with a boundary")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > s.stow_max_body_bytes:
            raise DomainError(
                "stow.too_large",
                f"request body of {declared} bytes is over the limit of "
                f"{s.stow_max_body_bytes} bytes (split it)",
                status=413,
            )
        body = StowBody(
            m.group(1).encode("latin-1"),
            services.spool.root / "stow",
            max_bytes=s.stow_max_body_bytes,
            max_parts=s.stow_max_parts,
        )
        try:
            try:
                async for chunk in request.stream():
                    body.feed(chunk)
                parts = body.finish()
            except StowTooLarge as exc:
                log.warning("STOW-RS refused (413): %s", exc)
                raise DomainError("stow.too_large", str(exc), status=413) from None
            except StowMalformed as exc:
                raise Invalid("stow.malformed", str(exc)) from None
            if not parts:
                raise Invalid("stow.empty", "no parts in the request")
            results = await asyncio.to_thread(stow_parts, services.spool, body, study)
        finally:
            body.close()
        stored, failed = [], []
        for res in results:
            if res.failure is None:
                stored.append(res)
            else:
                log.warning("STOW-RS instance %s refused: %s", res.sop_instance_uid or "?", res.reason)
                failed.append((res.sop_class_uid, res.sop_instance_uid, res.failure, res.reason))
        await audited(
            request,
            "imaging_instance.stow",
            study,
            [{"PatientID": r.patient_id, "StudyInstanceUID": r.study_instance_uid} for r in stored],
            stored=len(stored),
            refused=len(failed),
        )
        indexed = True
        if stored:
            services.pipeline.notify()
            indexed = await wait_indexed({r.sop_instance_uid for r in stored}, s.stow_index_wait_seconds)
        ds = Dataset()
        studies = {r.study_instance_uid for r in stored}
        only = study or (next(iter(studies)) if len(studies) == 1 else None)
        ds.RetrieveURL = f"{base(request)}/studies/{only}" if only else ""
        ref = []
        for res in stored:
            item = Dataset()
            item.ReferencedSOPClassUID = res.sop_class_uid
            item.ReferencedSOPInstanceUID = res.sop_instance_uid
            item.RetrieveURL = (
                f"{base(request)}/studies/{res.study_instance_uid}/series/{res.series_instance_uid}"
                f"/instances/{res.sop_instance_uid}"
            )
            ref.append(item)
        ds.ReferencedSOPSequence = ref
        fail = []
        for cls, sop, reason, _text in failed:
            item = Dataset()
            item.ReferencedSOPClassUID = cls
            item.ReferencedSOPInstanceUID = sop
            item.FailureReason = reason
            fail.append(item)
        if fail:
            ds.FailedSOPSequence = fail
        headers = {}
        if not indexed:
            headers["Warning"] = '299 imaging "stored; still being indexed: not yet queryable or retrievable"'
            log.warning(
                "STOW-RS: %d instance(s) stored but not indexed within %.0f s",
                len(stored),
                s.stow_index_wait_seconds,
            )
        status = 200 if not failed and indexed else (202 if stored else 409)
        return JSONResponse(ds.to_json_dict(), status_code=status, media_type=DICOM_JSON, headers=headers)

    document_routes(r)
    return r


# --- OpenAPI: what each DICOMweb answer's body is (the routes answer DICOM media types themselves) ------
_ATTRIBUTE = {
    "type": "object",
    "description": "a DICOM JSON attribute (PS3.18 F.2.2)",
    "properties": {
        "vr": {"type": "string", "examples": ["PN"]},
        "Value": {"type": "array", "items": {}},
        "InlineBinary": {"type": "string"},
        "BulkDataURI": {"type": "string"},
    },
    "required": ["vr"],
}
_DATASET = {
    "type": "object",
    "description": 'a DICOM JSON dataset: attributes keyed by tag ("0020000D")',
    "additionalProperties": _ATTRIBUTE,
}
_BINARY = {"type": "string", "format": "binary"}
_DATASETS = {200: {"content": {DICOM_JSON: {"schema": {"type": "array", "items": _DATASET}}}}}
DOCUMENTED: dict[str, dict[int | str, dict[str, Any]]] = {
    "search": {
        **_DATASETS,
        204: {"description": "no match"},
    },
    "metadata": _DATASETS,
    "retrieve": {
        200: {"content": {'multipart/related; type="application/dicom"': {"schema": _BINARY}}},
    },
    "frames": {
        200: {"content": {'multipart/related; type="application/octet-stream"': {"schema": _BINARY}}},
    },
    "rendered": {200: {"content": {media: {"schema": _BINARY} for media in MEDIA}}},
    "stow": {
        200: {"content": {DICOM_JSON: {"schema": _DATASET}}, "description": "every instance stored"},
        202: {"content": {DICOM_JSON: {"schema": _DATASET}}, "description": "some instances refused"},
    },
}


def _kind(route: APIRoute) -> str | None:
    last = route.path.rstrip("/").rsplit("/", 1)[-1]
    if "POST" in route.methods:
        return "stow"
    if "/bulkdata/" in route.path:  # a BulkDataURI: multipart application/octet-stream, like frames
        return "frames"
    if last in ("metadata", "rendered", "thumbnail", "frames"):
        return {"thumbnail": "rendered"}.get(last, last)
    if last in ("{frames}",):
        return "frames"
    if last in ("studies", "series", "instances"):
        return "search"
    if last in ("{study}", "{series}", "{sop}"):
        return "retrieve"
    return None


def document_routes(router: APIRouter) -> None:
    """Give each DICOMweb route its answer's media types and schemas in the OpenAPI (the routes return
    their responses themselves, so no JSON default is listed)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and (kind := _kind(route)) is not None:
            route.response_class = Response
            route.responses = {**DOCUMENTED[kind], **route.responses}
