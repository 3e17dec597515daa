"""Every RPC of EmrService has an access rule and an implementation (the base servicer answers
UNIMPLEMENTED: a method dropped by mistake is caught here, not by the web front end)."""

from __future__ import annotations

from hospital.contracts.emr.v1 import emr_pb2, emr_pb2_grpc
from hospital.emr.api.grpc import RULES, SERVICE, EmrServicer


def test_every_rpc_has_a_rule_and_an_implementation() -> None:
    methods = [m.name for m in emr_pb2.DESCRIPTOR.services_by_name["EmrService"].methods]
    assert sorted(RULES) == sorted(f"/{SERVICE}/{m}" for m in methods)
    base = emr_pb2_grpc.EmrServiceServicer
    missing = [m for m in methods if getattr(EmrServicer, m) is getattr(base, m)]
    assert missing == []
