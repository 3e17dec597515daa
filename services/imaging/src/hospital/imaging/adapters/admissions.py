"""Imaging's client of the admissions service (gRPC): the patients named by ``admissions.patient.merged``.

The merge event carries admissions ids; orders on the worklist and studies carry patient codes (DICOM
PatientID), so both records are read from admissions (``GetPatient``; a merged-away record is kept there
with ``merged_into``). Called with the service's own identity and the purpose of treatment, with a deadline,
on one channel that gRPC reconnects by itself; admissions audits each read.
"""

from __future__ import annotations

import grpc

from hospital.chassis.rpc import call_metadata
from hospital.chassis.security import ServiceIdentity
from hospital.contracts.admissions.v1 import admissions_pb2 as adm
from hospital.contracts.admissions.v1 import admissions_pb2_grpc as adm_grpc

PURPOSE = "TREAT"  # the worklist and the images of the patient's care follow the merge


class AdmissionsPatients:
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

    async def patient(self, patient_id: str) -> adm.Patient | None:
        """The patient record (also a merged-away one), None if admissions does not know the id. Any other
        failure (admissions down, a deadline) raises: the event is delivered again later."""
        try:
            return await self.stub.GetPatient(
                adm.GetPatientRequest(id=patient_id),
                metadata=call_metadata(self.identity.token(), PURPOSE),
                timeout=self.timeout,
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
