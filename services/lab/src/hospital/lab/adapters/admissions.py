"""The lab's client of the admissions service (gRPC): is the patient of an order registered?

Called with the lab's own service identity (a token minted by the chassis's :class:`ServiceIdentity`; in
production the projected service-account token), with a deadline, on one channel that gRPC reconnects by
itself. Admissions audits every read, so each check leaves a ``patient.read`` record naming the lab and
the purpose of use: the one stated by the request that brought the order, else treatment (``PURPOSE``).
"""

from __future__ import annotations

import logging

import grpc

from hospital.chassis.rpc import call_metadata
from hospital.chassis.security import ServiceIdentity
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as adm_grpc
from hospital.lab.app.orders import PatientCheck

log = logging.getLogger(__name__)

_UNKNOWN = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
# Why the lab reads a patient when no request stated it (HL7/ASTM orders, the re-check): treatment.
PURPOSE = "TREAT"


class AdmissionsPatients:
    """Patient look-ups in admissions: by id (``GetPatient``), then by patient code (``SearchPatients``,
    exact code match) for senders that only know the code (HL7 PID-3)."""

    def __init__(self, target: str, identity: ServiceIdentity, timeout: float) -> None:
        self.target, self.identity, self.timeout = target, identity, timeout
        self._channel: grpc.aio.Channel | None = None

    @property
    def stub(self) -> adm_grpc.AdmissionsServiceStub:
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                self.target,
                options=[
                    ("grpc.initial_reconnect_backoff_ms", 200),
                    ("grpc.max_reconnect_backoff_ms", 5_000),
                ],
            )
        return adm_grpc.AdmissionsServiceStub(self._channel)

    async def check(self, patient_id: str, patient_code: str | None = None) -> PatientCheck:
        # the purpose of the request that brought the order (e.g. ETREAT), else the lab's own: treatment
        metadata = call_metadata(self.identity.token(), PURPOSE)
        try:
            try:
                p = await self.stub.GetPatient(
                    adm.GetPatientRequest(id=patient_id), metadata=metadata, timeout=self.timeout
                )
                return PatientCheck("verified", p.id, p.patient_code, p.full_name)
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in _UNKNOWN or not patient_code:
                    raise
            found = await self.stub.SearchPatients(
                adm.SearchPatientsRequest(query=patient_code, limit=5),
                metadata=metadata,
                timeout=self.timeout,
            )
            for p in found.items:
                if p.patient_code == patient_code:
                    return PatientCheck("verified", p.id, p.patient_code, p.full_name)
            return PatientCheck(
                "unknown", reason=f"no patient with id or code {patient_code!r} in admissions"
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNKNOWN:
                return PatientCheck("unknown", reason=exc.details() or exc.code().name)
            level = (
                logging.ERROR
                if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                else logging.WARNING
            )
            log.log(
                level,
                "admissions at %s not asked about a patient: %s %s",
                self.target,
                exc.code().name,
                exc.details(),
            )
            return PatientCheck("unverified", reason=f"admissions {exc.code().name}")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
