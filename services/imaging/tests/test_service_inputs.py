"""Imaging's HTTP inputs are bounded: QIDO-RS limit/offset and numeric keys out of range, a wildcard in a
WADO-RS path and negative or overflowing list limits each get a specific 4xx problem (never a 500, never
"no limit"), and the connection keeps answering."""

from __future__ import annotations

from hospital.testing.services import http_client


async def test_qido_numbers_and_wado_paths(imaging) -> None:
    async with http_client(imaging, "radiologist") as c:
        for params, field in (
            ({"limit": str(2**63)}, "limit"),
            ({"offset": "99999999999999999999"}, "offset"),
            ({"limit": "-1"}, "limit"),
            ({"offset": "1e3"}, "offset"),
        ):
            r = await c.get("/dicomweb/studies", params=params)
            assert r.status_code == 422 and r.json()["field"] == field, (params, r.text)
        for key in ("SeriesNumber", "00200011", "InstanceNumber"):
            level = "/dicomweb/instances" if key == "InstanceNumber" else "/dicomweb/series"
            r = await c.get(level, params={key: str(2**63)})
            assert r.status_code == 422 and r.json()["code"] == "qido.invalid", (key, r.text)
            assert "out of range" in r.json()["detail"]
        assert (await c.get("/dicomweb/series", params={"SeriesNumber": "7"})).status_code == 204
        for path in (
            "/dicomweb/studies/*",
            "/dicomweb/studies/*/metadata",
            "/dicomweb/studies/1.2.3/series/*",
            "/dicomweb/studies/1.2.3%3F4/series/5/instances/6",
        ):
            r = await c.get(path)
            assert r.status_code == 422 and r.json()["code"] == "dicomweb.invalid_uid", (path, r.text)
        r = await c.get("/dicomweb/studies/1.2.840.99999.1")
        assert r.status_code == 404 and r.json()["code"] == "dicomweb.not_found"


async def test_list_limits_are_positive_and_bounded(imaging) -> None:
    async with http_client(imaging, "radiologist") as c:
        for path in ("/api/v1/orders", "/api/v1/conflicts", "/api/v1/mpps"):
            for value in ("-1", "0", str(2**63)):
                r = await c.get(path, params={"limit": value})
                assert r.status_code == 422 and r.json()["field"] == "query.limit", (path, value, r.text)
            r = await c.get(path, params={"limit": "5"})
            assert r.status_code == 200, r.text


async def test_routing_rule_fields_are_bounded(imaging) -> None:
    async with http_client(imaging, "admin") as c:
        for body, field in (
            ({"destination_ae": "ARCHIVE", "name": "lưu trữ\x00"}, "name"),
            ({"destination_ae": "A" * 17}, "destination_ae"),
            ({"destination_ae": "ARCHIVE", "attributes": {"Modality": "CT\x00"}}, "attributes.Modality"),
            ({"destination_ae": "ARCHIVE", "attributes": {f"k{i}": "v" for i in range(21)}}, "attributes"),
        ):
            r = await c.post("/api/v1/routing/rules", json=body)
            assert r.status_code == 422 and r.json()["field"] == field, (field, r.text)
        assert (await c.get("/api/v1/routing/rules")).json()["items"] == []
