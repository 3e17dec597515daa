"""The lab's use cases, built once per process and handed to the HTTP and gRPC APIs."""

from __future__ import annotations

from dataclasses import dataclass

from hospital.lab.app.catalogue import Catalogue
from hospital.lab.app.ingest import IngestService
from hospital.lab.app.orders import OrderService
from hospital.lab.app.qc import QcService
from hospital.lab.app.results import ResultService


@dataclass
class Services:
    catalogue: Catalogue
    orders: OrderService
    results: ResultService
    qc: QcService
    ingest: IngestService
