"""Service chassis shared by every hospital service: settings, logging, telemetry, database with
outbox/inbox, event bus, object storage, security and audit, and the service runner.

Libraries never import services; services import this package and ``hospital.contracts`` only.
"""
