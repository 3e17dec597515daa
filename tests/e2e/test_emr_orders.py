"""Orders from the EMR reach the real lab and imaging services: reception opens a visit in admissions (the
EMR opens the encounter from its event), the doctor orders tests and a CT; the EMR's worker places them
over gRPC with its service identity and the visit reference; orders the lab or imaging refuse show
refused with the reason; a cancellation reaches the lab; an order placed while the lab is down waits,
retries and is placed once the lab is up (never lost)."""

from __future__ import annotations

import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "services" / "emr" / "tests"))

from emr_testkit import client, eventually, token

from hospital.admissions.service import DEFINITION as ADMISSIONS
from hospital.chassis.app import Service
from hospital.chassis.rpc import call_metadata
from hospital.contracts.emr.v1 import emr_pb2, emr_pb2_grpc
from hospital.contracts.imaging.v1 import events_pb2 as img_events
from hospital.contracts.imaging.v1 import imaging_pb2, imaging_pb2_grpc
from hospital.contracts.lab.v1 import events_pb2 as lab_events
from hospital.contracts.lab.v1 import lab_pb2, lab_pb2_grpc
from hospital.emr.service import DEFINITION as EMR
from hospital.imaging.service import DEFINITION as IMAGING
from hospital.lab.service import DEFINITION as LAB
from hospital.testing.servers import free_port
from hospital.testing.services import http_client, issuer_for, running_service


@pytest.fixture
async def platform(nats_server, s3_server, tmp_path):
    def db(name: str) -> str:
        return f"sqlite+aiosqlite:///{tmp_path}/{name}.db"

    tag = tmp_path.name[-12:]
    async with (
        running_service(
            ADMISSIONS, data_dir=tmp_path, database_url=db("adm"), nats_url=nats_server.url
        ) as adm,
        running_service(
            LAB,
            data_dir=tmp_path,
            database_url=db("lab"),
            nats_url=nats_server.url,
            mllp_port=free_port(),
            astm_port=free_port(),
            instrument_timezone="UTC",
            admissions_grpc=f"127.0.0.1:{adm.settings.grpc_port}",
        ) as lab,
        running_service(
            IMAGING,
            data_dir=tmp_path,
            database_url=db("img"),
            nats_url=nats_server.url,
            s3_endpoint=s3_server.endpoint,
            s3_access_key=s3_server.access_key,
            s3_secret_key=s3_server.secret_key,
            dicom_host="127.0.0.1",
            dicom_port=free_port(),
            shutdown_grace_seconds=2,
        ) as img,
        running_service(
            EMR,
            data_dir=tmp_path,
            database_url=db("emr"),
            nats_url=nats_server.url,
            lab_grpc_target=f"127.0.0.1:{lab.settings.grpc_port}",
            imaging_grpc_target=f"127.0.0.1:{img.settings.grpc_port}",
            admissions_durable=f"emr-adm-{tag}",
            order_retry_base_seconds=0.2,
            shutdown_grace_seconds=2,
        ) as emr,
    ):
        yield adm, lab, img, emr


async def _register_and_open(adm: Service) -> tuple[dict, dict]:
    async with http_client(adm, "receptionist") as reception:
        r = await reception.post(
            "/api/v1/patients",
            json={
                "full_name": "Võ Thị Thu Trang",
                "birth_date": "1979-05-02",
                "sex": "female",
                "bhyt_number": "HT3350123456780",
                "bhyt_valid_from": "2026-01-01",
                "bhyt_valid_to": "2026-12-31",
            },
        )
        assert r.status_code == 201, r.text
        patient = r.json()
        r = await reception.post(
            "/api/v1/visits", json={"patient_id": patient["id"], "room": "P101", "kind": "insured"}
        )
        assert r.status_code in (200, 201), r.text
        return patient, r.json()


async def _settled(doctor: Any, encounter_id: str, n: int) -> list[dict] | None:
    items = (await doctor.get(f"/api/v1/encounters/{encounter_id}/orders")).json()["items"]
    return (
        items
        if len(items) == n and all(o["status"] not in ("pending", "cancel_pending") for o in items)
        else None
    )


async def test_orders_reach_lab_and_imaging_refusals_show_and_cancel_reaches_the_lab(platform) -> None:
    adm, lab, img, emr = platform
    patient, visit = await _register_and_open(adm)
    async with client(emr) as doctor:

        async def encounter() -> Any:
            items = (await doctor.get("/api/v1/encounters", params={"patient_id": patient["id"]})).json()[
                "items"
            ]
            return items[0] if items else None

        enc = await eventually(encounter)
        assert enc["visit_id"] == visit["id"] and enc["patient_code"] == patient["patient_code"]

        r = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            json={
                "request_id": "kham-1",
                "lab": [{"tests": ["CBC", "GLU"], "clinical_note": "Sốt, ho"}, {"tests": ["XYZ123"]}],
                "imaging": [
                    {
                        "procedure_code": "CT-SN",
                        "description": "CT sọ não không tiêm thuốc",
                        "modality": "CT",
                    },
                    {
                        "procedure_code": "XQ-NGUC",
                        "description": "X-quang ngực thẳng",
                        "modality": "DX",
                        "station_ae_title": "MÁY X-QUANG 1",
                    },
                ],
            },
        )
        assert r.status_code == 201, r.text
        placed = r.json()["orders"]
        assert [o["status"] for o in placed] == ["pending"] * 4
        again = await doctor.post(
            f"/api/v1/encounters/{enc['id']}/orders",
            json={"request_id": "kham-1", "lab": [{"tests": ["CBC"]}]},
        )
        assert [o["id"] for o in again.json()["orders"]] == [o["id"] for o in placed]  # idempotent

        orders = await eventually(lambda: _settled(doctor, enc["id"], 4))
        by_id = {o["id"]: o for o in orders}
        cbc, bad_lab, ct, bad_ct = (by_id[o["id"]] for o in placed)
        assert cbc["status"] == "placed" and cbc["downstream_id"]
        assert bad_lab["status"] == "refused" and "XYZ123" in bad_lab["refusal_reason"]
        assert ct["status"] == "placed" and ct["accession_number"].startswith("CD")
        assert bad_ct["status"] == "refused" and "AE title" in bad_ct["refusal_reason"]

        # what the lab and imaging services hold: the visit reference (billing charges it) and our numbers
        svc_token = issuer_for(emr).mint_for_service("test")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
            lab_order = await lab_pb2_grpc.LabServiceStub(ch).GetOrder(
                lab_pb2.GetOrderRequest(order_id=cbc["downstream_id"]), metadata=call_metadata(svc_token)
            )
        assert (
            lab_order.visit_id == visit["id"] and lab_order.placer_order_number == cbc["placer_order_number"]
        )
        assert {i.test_code for i in lab_order.items} >= {
            "GLU"
        } and lab_order.ordering_doctor == "user:bs.minh"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{img.settings.grpc_port}") as ch:
            img_order = await imaging_pb2_grpc.ImagingServiceStub(ch).GetOrder(
                imaging_pb2.GetOrderRequest(id=ct["downstream_id"]), metadata=call_metadata(svc_token)
            )
        assert img_order.accession_number == ct["accession_number"] and img_order.visit_ref == visit["id"]
        assert (
            img_order.order_ref == ct["id"] and img_order.patient.full_name == "Võ^Thị Thu Trang"
        )  # DICOM PN

        # a cancellation goes to the lab the same way
        r = await doctor.post(
            f"/api/v1/orders/{cbc['id']}/cancel", json={"reason": "Bệnh nhân từ chối lấy máu"}
        )
        assert r.status_code == 200 and r.json()["status"] == "cancel_pending"
        orders = await eventually(lambda: _settled(doctor, enc["id"], 4))
        assert {o["id"]: o for o in orders}[cbc["id"]]["status"] == "cancelled"
    async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
        lab_order = await lab_pb2_grpc.LabServiceStub(ch).GetOrder(
            lab_pb2.GetOrderRequest(order_id=cbc["downstream_id"]), metadata=call_metadata(svc_token)
        )
    assert lab_order.status == "cancelled" and lab_order.cancel_reason == "Bệnh nhân từ chối lấy máu"

    # the chart shows the refused orders with their reasons (gRPC, as the web front end reads it)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{emr.settings.grpc_port}") as ch:
        listed = await emr_pb2_grpc.EmrServiceStub(ch).ListOrders(
            emr_pb2.ListOrdersRequest(encounter_id=enc["id"]), metadata=call_metadata(token(emr))
        )
    refused = {o.id: o.refusal_reason for o in listed.items if o.status == "refused"}
    assert set(refused) == {bad_lab["id"], bad_ct["id"]} and all(refused.values())


async def test_an_order_waits_for_a_lab_that_is_down_and_is_placed_once_it_is_up(
    nats_server, tmp_path
) -> None:
    import nats
    from emr_testkit import Admissions

    lab_port = free_port()
    tag = tmp_path.name[-12:]
    async with running_service(
        EMR,
        data_dir=tmp_path,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/emr.db",
        nats_url=nats_server.url,
        lab_grpc_target=f"127.0.0.1:{lab_port}",
        admissions_durable=f"emr-adm-{tag}",
        order_retry_base_seconds=0.1,
        order_retry_max_seconds=0.5,
        order_send_timeout_seconds=1.0,
        shutdown_grace_seconds=2,
    ) as emr:
        nc = await nats.connect(nats_server.url)
        try:
            _, patient = await Admissions(nc.jetstream()).open_visit()
        finally:
            await nc.close()
        async with client(emr) as doctor:

            async def encounter() -> Any:
                items = (await doctor.get("/api/v1/encounters", params={"patient_id": patient.id})).json()[
                    "items"
                ]
                return items[0] if items else None

            enc = await eventually(encounter)
            r = await doctor.post(
                f"/api/v1/encounters/{enc['id']}/orders", json={"lab": [{"tests": ["GLU"]}]}
            )
            order = r.json()["orders"][0]

            async def retried() -> Any:
                o = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"][0]
                return o if o["attempts"] >= 2 else None

            waiting = await eventually(retried)
            assert waiting["status"] == "pending" and "UNAVAILABLE" in waiting["last_error"]

            async with running_service(
                LAB,
                data_dir=tmp_path,
                database_url=f"sqlite+aiosqlite:///{tmp_path}/lab.db",
                nats_url=nats_server.url,
                grpc_port=lab_port,
                mllp_port=free_port(),
                astm_port=free_port(),
                instrument_timezone="UTC",
                admissions_grpc=f"127.0.0.1:{free_port()}",  # unreachable: the order is taken unverified
            ):
                orders = await eventually(lambda: _settled(doctor, enc["id"], 1))
            assert orders[0]["id"] == order["id"], orders[0]
            assert orders[0]["status"] == "placed", orders[0]["refusal_reason"]
            assert orders[0]["downstream_id"] and orders[0]["last_error"] == ""


async def test_orders_waiting_for_a_down_imaging_service_do_not_hold_back_lab_orders(
    nats_server, tmp_path
) -> None:
    """More imaging orders wait for their retry than the dispatcher reads at once (imaging is down for a
    while); a lab order placed after them still reaches the lab at once."""
    import nats
    from emr_testkit import Admissions

    tag = tmp_path.name[-12:]
    async with (
        running_service(
            LAB,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/lab.db",
            nats_url=nats_server.url,
            mllp_port=free_port(),
            astm_port=free_port(),
            instrument_timezone="UTC",
            admissions_grpc=f"127.0.0.1:{free_port()}",  # unreachable: the order is taken unverified
        ) as lab,
        running_service(
            EMR,
            data_dir=tmp_path,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/emr.db",
            nats_url=nats_server.url,
            lab_grpc_target=f"127.0.0.1:{lab.settings.grpc_port}",
            imaging_grpc_target=f"127.0.0.1:{free_port()}",  # imaging is down
            admissions_durable=f"emr-adm-{tag}",
            order_retry_base_seconds=600.0,  # the imaging orders wait for their retry all test long
            order_send_timeout_seconds=1.0,
            shutdown_grace_seconds=2,
        ) as emr,
    ):
        nc = await nats.connect(nats_server.url)
        try:
            _, patient = await Admissions(nc.jetstream()).open_visit()
        finally:
            await nc.close()
        async with client(emr) as doctor:

            async def encounter() -> Any:
                items = (await doctor.get("/api/v1/encounters", params={"patient_id": patient.id})).json()[
                    "items"
                ]
                return items[0] if items else None

            enc = await eventually(encounter)
            ct = {"procedure_code": "CT-SN", "description": "CT sọ não không tiêm thuốc", "modality": "CT"}
            for _ in range(6):  # 120 imaging orders: more than the 100 due commands read per round
                r = await doctor.post(f"/api/v1/encounters/{enc['id']}/orders", json={"imaging": [ct] * 20})
                assert r.status_code == 201, r.text

            async def all_tried() -> Any:
                items = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
                return items if len(items) == 120 and all(o["attempts"] >= 1 for o in items) else None

            waiting = await eventually(all_tried, timeout=60)
            assert all(o["status"] == "pending" and o["last_error"] for o in waiting)

            r = await doctor.post(
                f"/api/v1/encounters/{enc['id']}/orders", json={"lab": [{"tests": ["GLU"]}]}
            )
            assert r.status_code == 201, r.text
            glu = r.json()["orders"][0]

            async def placed() -> Any:
                items = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
                o = next(o for o in items if o["id"] == glu["id"])
                return o if o["status"] == "placed" else None

            done = await eventually(placed)
            assert done["downstream_id"] and done["attempts"] == 1


def _lab_result(lab_order: lab_pb2.Order, code: str, value: str, *, revision: int = 1) -> lab_pb2.Result:
    r = lab_pb2.Result(
        id=f"{lab_order.id}:{code}",
        order_id=lab_order.id,
        patient_id=lab_order.patient.id,
        test_code=code,
        test_name=code,
        value=value,
        unit="",
        reference_range="",
        flag="",
        status="verified",
        revision=revision,
    )
    r.observed_at.FromDatetime(datetime.now(UTC))
    r.verified_at.FromDatetime(datetime.now(UTC))
    return r


async def test_order_status_follows_its_results_partial_resulted_and_the_study_reported(
    platform, nats_server
) -> None:
    """A lab order is partial while some of its order lines (the CBC panel expanded by the lab) have verified
    results and resulted once every line has one; an amendment keeps it resulted; a late or repeated result
    changes nothing; an imaging order is resulted when its study arrives and reported once the report is
    signed. HTTP, gRPC and FHIR show the same status."""
    import nats
    from emr_testkit import Admissions

    adm, lab, _img, emr = platform
    patient, _visit = await _register_and_open(adm)
    nc = await nats.connect(nats_server.url)
    bus = Admissions(nc.jetstream())  # publishes as the lab and imaging relays do
    try:
        async with client(emr) as doctor:

            async def encounter() -> Any:
                items = (await doctor.get("/api/v1/encounters", params={"patient_id": patient["id"]})).json()[
                    "items"
                ]
                return items[0] if items else None

            enc = await eventually(encounter)
            r = await doctor.post(
                f"/api/v1/encounters/{enc['id']}/orders",
                json={
                    "lab": [{"tests": ["CBC", "GLU"]}],
                    "imaging": [
                        {"procedure_code": "XQ-NGUC", "description": "X-quang ngực thẳng", "modality": "DX"}
                    ],
                },
            )
            assert r.status_code == 201, r.text
            lab_o, img_o = r.json()["orders"]
            by_id = {o["id"]: o for o in await eventually(lambda: _settled(doctor, enc["id"], 2))}
            lab_o, img_o = by_id[lab_o["id"]], by_id[img_o["id"]]
            assert lab_o["status"] == img_o["status"] == "placed"
            async with grpc.aio.insecure_channel(f"127.0.0.1:{lab.settings.grpc_port}") as ch:
                lab_order = await lab_pb2_grpc.LabServiceStub(ch).GetOrder(
                    lab_pb2.GetOrderRequest(order_id=lab_o["downstream_id"]),
                    metadata=call_metadata(issuer_for(emr).mint_for_service("test")),
                )
            lines = [i.test_code for i in lab_order.items]
            assert "GLU" in lines and "CBC" not in lines and len(lines) > 2, lines  # the panel is expanded

            async def status_of(order_id: str, expected: str) -> Any:
                async def check() -> Any:
                    got = (await doctor.get(f"/api/v1/encounters/{enc['id']}/orders")).json()["items"]
                    order = next(o for o in got if o["id"] == order_id)
                    return order if order["status"] == expected else None

                return await eventually(check)

            async def results() -> dict[str, dict]:
                r = await doctor.get(
                    f"/api/v1/patients/{patient['id']}/results", params={"encounter_id": enc["id"]}
                )
                return {x["test_code"]: x for x in r.json()["results"]}

            # one line verified: partial
            await bus.publish(
                "lab.result.verified", lab_events.ResultVerified(result=_lab_result(lab_order, "GLU", "6.1"))
            )
            partial = await status_of(lab_o["id"], "partial")
            # every line but one: still partial; the last one: resulted
            rest = [c for c in lines if c != "GLU"]
            for code in rest[:-1]:
                await bus.publish(
                    "lab.result.verified", lab_events.ResultVerified(result=_lab_result(lab_order, code, "5"))
                )

            async def all_but_last() -> Any:
                return {"GLU", *rest[:-1]} <= set(await results())

            await eventually(all_but_last)
            assert (await status_of(lab_o["id"], "partial"))["updated_at"] >= partial["updated_at"]
            await bus.publish(
                "lab.result.verified",
                lab_events.ResultVerified(result=_lab_result(lab_order, rest[-1], "5")),
            )
            resulted = await status_of(lab_o["id"], "resulted")

            # an amendment keeps it resulted
            amended = _lab_result(lab_order, "GLU", "7.4", revision=2)
            amended.status = "amended"
            await bus.publish(
                "lab.result.amended", lab_events.ResultAmended(result=amended, previous_value="6.1")
            )

            async def glu_amended() -> Any:
                return (await results())["GLU"]["value"] == "7.4"

            await eventually(glu_amended)
            # the old revision arriving late and a repeated result (a new event for the same result) change
            # nothing; a result for a test outside the order lines, published after them, shows they were
            # applied
            await bus.publish(
                "lab.result.verified", lab_events.ResultVerified(result=_lab_result(lab_order, "GLU", "6.1"))
            )
            await bus.publish(
                "lab.result.verified", lab_events.ResultVerified(result=_lab_result(lab_order, rest[0], "5"))
            )
            await bus.publish(
                "lab.result.verified", lab_events.ResultVerified(result=_lab_result(lab_order, "CRP", "3"))
            )

            async def extra_applied() -> Any:
                return "CRP" in await results()

            await eventually(extra_applied)
            assert (await results())["GLU"]["value"] == "7.4"
            again = await status_of(lab_o["id"], "resulted")
            assert again["updated_at"] == resulted["updated_at"]

            # imaging: the study arrives (matched by accession number), then the report is signed
            uid = f"1.2.840.113619.2.55.3.{uuid.uuid4().int % 10**12}"
            study = img_events.StudyReceived(
                study_instance_uid=uid,
                accession_number=img_o["accession_number"],
                order_id=img_o["downstream_id"],
                patient_code=patient["patient_code"],
                modalities=["DX"],
                series_count=1,
                instance_count=2,
            )
            study.last_received_at.FromDatetime(datetime.now(UTC))
            await bus.publish("imaging.study.received", study)
            await status_of(img_o["id"], "resulted")
            await bus.publish("imaging.study.received", study, event_id=str(uuid.uuid4()))  # sent again

            async with grpc.aio.insecure_channel(f"127.0.0.1:{emr.settings.grpc_port}") as ch:
                listed = await emr_pb2_grpc.EmrServiceStub(ch).ListOrders(
                    emr_pb2.ListOrdersRequest(encounter_id=enc["id"]), metadata=call_metadata(token(emr))
                )
            assert {o.id: o.status for o in listed.items} == {
                lab_o["id"]: "resulted",
                img_o["id"]: "resulted",
            }
            fhir = await doctor.get(f"/fhir/ServiceRequest/{lab_o['id']}")
            assert fhir.status_code == 200 and fhir.json()["status"] == "completed", fhir.text

        async with client(emr, "radiologist", subject="user:bs.cdha", name="BS. Hoàng Văn Phúc") as rad:
            report = await rad.post(
                "/api/v1/radiology/reports",
                json={
                    "kind": "radiology_report",
                    "study_instance_uid": uid,
                    "sections": [{"code": "conclusion", "title": "Kết luận", "text": "Phổi bình thường"}],
                },
            )
            assert report.status_code == 201, report.text
            assert (await rad.post(f"/api/v1/documents/{report.json()['id']}/sign")).status_code == 200
        async with client(emr) as doctor:
            await status_of(img_o["id"], "reported")
    finally:
        await nc.close()
