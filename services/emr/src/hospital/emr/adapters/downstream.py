"""gRPC clients of the lab and imaging services, called with the EMR's service identity token. A call
either returns the downstream order, raises :class:`Refused` (the service said no: the order is wrong and
sending it again will not help) or raises :class:`Transient` (try again later). Orders are sent by the
outbox worker, after the doctor's request: the calls state treatment (``PURPOSE``) as their purpose of use."""

from __future__ import annotations

from typing import Any

import grpc

from hospital.chassis.rpc import call_metadata
from hospital.chassis.security import ServiceIdentity
from hospital.contracts.imaging.v1 import imaging_pb2, imaging_pb2_grpc
from hospital.contracts.lab.v1 import lab_pb2, lab_pb2_grpc

REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.OUT_OF_RANGE,
}


PURPOSE = "TREAT"  # clinical orders are placed and cancelled for the patient's treatment


class Refused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Transient(Exception):
    pass


class Downstream:
    def __init__(
        self, identity: ServiceIdentity, lab_target: str, imaging_target: str, timeout: float
    ) -> None:
        self.identity, self.timeout = identity, timeout
        self._targets = {"lab": lab_target, "imaging": imaging_target}
        self._channels: dict[str, grpc.aio.Channel] = {}

    def _channel(self, name: str) -> grpc.aio.Channel:
        if name not in self._channels:
            self._channels[name] = grpc.aio.insecure_channel(self._targets[name])
        return self._channels[name]

    async def _call(self, method: Any, request: Any) -> Any:
        try:
            return await method(
                request, metadata=call_metadata(self.identity.token(), PURPOSE), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() in REFUSALS:
                raise Refused(exc.details() or exc.code().name) from exc
            raise Transient(f"{exc.code().name}: {exc.details()}") from exc

    async def lab_place(self, request: lab_pb2.PlaceOrderRequest) -> lab_pb2.Order:
        return await self._call(lab_pb2_grpc.LabServiceStub(self._channel("lab")).PlaceOrder, request)

    async def lab_cancel(self, order_id: str, reason: str) -> lab_pb2.Order:
        stub = lab_pb2_grpc.LabServiceStub(self._channel("lab"))
        return await self._call(
            stub.CancelOrder, lab_pb2.CancelOrderRequest(order_id=order_id, reason=reason)
        )

    async def imaging_schedule(self, request: imaging_pb2.ScheduleOrderRequest) -> imaging_pb2.Order:
        return await self._call(
            imaging_pb2_grpc.ImagingServiceStub(self._channel("imaging")).ScheduleOrder, request
        )

    async def imaging_cancel(self, order_id: str, reason: str) -> imaging_pb2.Order:
        stub = imaging_pb2_grpc.ImagingServiceStub(self._channel("imaging"))
        return await self._call(stub.CancelOrder, imaging_pb2.CancelOrderRequest(id=order_id, reason=reason))

    async def close(self) -> None:
        for ch in self._channels.values():
            await ch.close()
        self._channels.clear()
